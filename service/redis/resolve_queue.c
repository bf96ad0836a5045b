/* resolve_queue.lua's arguments and replies. */
#include "redis/resolve_queue.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/config.h"
#include "core/error.h"
#include "redis/keys.h"
#include "redis/policy.h"
#include "redis/redis.h"

/* At most this many keys per take: the reply is read into a stack array. */
#define TAKE_MAX 64

int resolve_queue_add(struct redis_ctx *r, const struct config *cfg, const char *key,
                      int64_t in_ms, int keep_earlier)
{
    char ms[24], ttl[16];
    snprintf(ms, sizeof(ms), "%lld", (long long)(in_ms < 0 ? 0 : in_ms));
    snprintf(ttl, sizeof(ttl), "%d", cfg->idempotency_ttl_s);
    const char *keys[] = {KEYS_RESOLVE_QUEUE};
    const char *args[] = {"add", key, ms, keep_earlier ? "nx" : "set", ttl};
    return policy_eval(r, POLICY_RESOLVE_QUEUE, 1, keys, 5, args, redis_on_write,
                       (void *)"resolve queue");
}

void resolve_queue_done(struct redis_ctx *r, const char *key)
{
    const char *keys[] = {KEYS_RESOLVE_QUEUE};
    const char *args[] = {"done", key};
    /* Left behind, the entry comes back once and finds nothing to do. */
    policy_eval(r, POLICY_RESOLVE_QUEUE, 1, keys, 2, args, redis_on_write,
                (void *)"resolve queue");
}

struct take {
    resolve_queue_taken_fn *fn;
    void *data;
};

static void on_taken(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct take t = *(struct take *)privdata;
    const redisReply *rep = reply;
    const char *keys[TAKE_MAX];
    int n = 0;

    free(privdata);
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        /* NOSCRIPT included: redis.c loads the scripts on every connect,
         * and the next sweep runs again. */
        t.fn(NULL, -1, t.data);
        return;
    }
    for (size_t i = 0; i < rep->elements && n < TAKE_MAX; i++)
        if (rep->element[i]->type == REDIS_REPLY_STRING)
            keys[n++] = rep->element[i]->str;
    t.fn(keys, n, t.data);
}

int resolve_queue_take(struct redis_ctx *r, int max, int64_t lease_ms,
                       resolve_queue_taken_fn *fn, void *data)
{
    char n[12], lease[24];
    struct take *t = malloc(sizeof(*t));
    if (!t)
        return CG_ENOMEM;
    t->fn = fn;
    t->data = data;
    snprintf(n, sizeof(n), "%d", max > TAKE_MAX ? TAKE_MAX : max < 1 ? 1 : max);
    snprintf(lease, sizeof(lease), "%lld", (long long)lease_ms);
    const char *keys[] = {KEYS_RESOLVE_QUEUE};
    const char *args[] = {"take", n, lease};
    int rc = policy_eval(r, POLICY_RESOLVE_QUEUE, 1, keys, 3, args, on_taken, t);
    if (rc)
        free(t);
    return rc;
}
