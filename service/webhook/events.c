/* Appending to the events stream. */
#include "webhook/events.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "core/config.h"
#include "core/error.h"
#include "loop/loop.h"
#include "redis/keys.h"
#include "redis/redis.h"

#define MAX_FIELDS 24

int events_append(struct app *app, const char **fields, const size_t *lens, int nfields,
                  redisCallbackFn *fn, void *privdata)
{
    const char *argv[6 + MAX_FIELDS + 2];
    size_t argvlen[6 + MAX_FIELDS + 2];
    char maxlen[24], at[24], ttl[16];
    struct timespec ts;
    int argc = 0;
    LOOP_ASSERT_OWNER(loop_base(app_home(app)->loop));

    if (nfields > MAX_FIELDS)
        return CG_EINVAL;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(at, sizeof(at), "%lld", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    snprintf(maxlen, sizeof(maxlen), "%d", app->cfg->events_maxlen);
    argv[argc++] = "XADD";
    argv[argc++] = KEYS_EVENTS;
    argv[argc++] = "MAXLEN";
    argv[argc++] = "~";
    argv[argc++] = maxlen;
    argv[argc++] = "*";
    for (int i = 0; i < nfields; i++)
        argv[argc++] = fields[i] ? fields[i] : "";
    argv[argc++] = "at";
    argv[argc++] = at;
    for (int i = 0; i < argc; i++)
        argvlen[i] = lens && i >= 6 && i < 6 + nfields && fields[i - 6] ? lens[i - 6]
                                                                        : strlen(argv[i]);
    int rc = redis_command_argv(app_home(app)->redis, fn, privdata, argc, argv, argvlen);
    if (rc)
        return rc;
    snprintf(ttl, sizeof(ttl), "%d", EVENTS_TTL_S);
    const char *expire[] = {"EXPIRE", KEYS_EVENTS, ttl};
    redis_command_argv(app_home(app)->redis, NULL, NULL, 3, expire, NULL);
    return CG_OK;
}
