/* JSON-lines logger. Lines are built with jansson so any value is escaped
 * correctly, then written whole. */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int min_level = LOG_LEVEL_INFO;
static atomic_int out_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; i <= LOG_LEVEL_ERROR; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_level(enum log_level level)
{
    atomic_store(&min_level, level);
}

void log_set_fd(int fd)
{
    atomic_store(&out_fd, fd);
}

int log_enabled(enum log_level level)
{
    return (int)level >= atomic_load(&min_level);
}

static void format_time(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

void log_event(enum log_level level, const char *event, json_t *fields)
{
    char when[32];
    json_t *line = NULL;
    char *text = NULL;

    if (!log_enabled(level))
        goto done;
    format_time(when, sizeof(when));
    line = json_pack("{s:s, s:s, s:s}", "time", when, "level", level_names[level],
                     "event", event);
    if (!line)
        goto done;
    if (fields)
        json_object_update_missing(line, fields);
    text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    if (!text)
        goto done;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room: we overwrite its NUL and write n+1 */
    ssize_t w = write(atomic_load(&out_fd), text, n + 1);
    (void)w; /* nowhere better to report a failed log write */
done:
    free(text);
    json_decref(line);
    json_decref(fields);
}

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_event(level, event, json_pack("{s:s}", "msg", msg));
}

int log_limit_allow(struct log_limit *l, int per_sec, unsigned long *suppressed)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    *suppressed = 0;
    if (now - l->window_ms >= 1000) {
        l->window_ms = now;
        l->used = 0;
    }
    if (l->used >= per_sec) {
        l->suppressed++;
        return 0;
    }
    l->used++;
    *suppressed = l->suppressed;
    l->suppressed = 0;
    return 1;
}
