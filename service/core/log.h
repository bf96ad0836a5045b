/* Structured logs: one JSON object per line on stderr, with time, level and
 * event. Secrets must never be handed to these functions. */
#ifndef COMMSGATE_LOG_H
#define COMMSGATE_LOG_H

#include <jansson.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Returns 0 and sets *out, or -1 for a name that is not a level. */
int log_level_parse(const char *name, enum log_level *out);
void log_set_level(enum log_level level);
/* Where lines go (default 2, stderr); for tests. */
void log_set_fd(int fd);
int log_enabled(enum log_level level);

/* Emits {"time","level","event",...fields}. `fields` is stolen (may be NULL).
 * Any thread; each line is written with one write(2), so lines from several
 * threads never interleave. */
void log_event(enum log_level level, const char *event, json_t *fields);

/* log_event with a single "msg" field built from a printf format. */
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A budget of lines per second for one kind of line that a client can make
 * happen (a refused webhook, an accept error): a flood of them must not
 * become a flood of log lines. One per call site; its owner's thread only. */
struct log_limit {
    long long window_ms;     /* the current second */
    int used;                /* lines written in it */
    unsigned long suppressed; /* lines not written since the last one that was */
};

/* True if one more line may be written now, at most per_sec a second. When
 * it returns true after suppressing some, *suppressed says how many (add it
 * to the line); else *suppressed is 0. */
int log_limit_allow(struct log_limit *l, int per_sec, unsigned long *suppressed);

#define log_debug(event, ...) log_msg(LOG_LEVEL_DEBUG, event, __VA_ARGS__)
#define log_info(event, ...) log_msg(LOG_LEVEL_INFO, event, __VA_ARGS__)
#define log_warn(event, ...) log_msg(LOG_LEVEL_WARN, event, __VA_ARGS__)
#define log_error(event, ...) log_msg(LOG_LEVEL_ERROR, event, __VA_ARGS__)

#endif
