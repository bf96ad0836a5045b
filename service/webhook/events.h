/* The events stream other services consume: every message status, inbound
 * message and call status, once, in a capped Redis Stream. Loop thread. */
#ifndef COMMSGATE_WEBHOOK_EVENTS_H
#define COMMSGATE_WEBHOOK_EVENTS_H

#include <hiredis/async.h>

struct app;

/* The stream is renewed with every event and expires when none come. */
#define EVENTS_TTL_S 604800

/* XADD cg:events MAXLEN ~ COMMSGATE_EVENTS_MAXLEN * field value... plus an
 * "at" field (unix ms). lens: each field's length, or NULL for C strings
 * (a message's Body may hold a NUL). fn gets the XADD reply; CG_EREDIS at
 * once if Redis is down (fn not called). */
int events_append(struct app *app, const char **fields, const size_t *lens, int nfields,
                  redisCallbackFn *fn, void *privdata);

#endif
