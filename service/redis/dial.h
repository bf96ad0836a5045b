/* Opening a hiredis async connection without blocking the loop: hiredis 0.14
 * would resolve a host name with getaddrinfo inline, so names are looked up
 * on a thread of their own first. Used for data nodes and sentinels alike.
 * Loop thread; the base must have been made with threads on (loop_new). */
#ifndef COMMSGATE_REDIS_DIAL_H
#define COMMSGATE_REDIS_DIAL_H

#include <hiredis/async.h>

struct event_base;
struct redis_dial;

/* The connection, attached to the loop and still connecting (set its
 * connect and disconnect callbacks at once), or NULL and why not. */
typedef void redis_dial_fn(redisAsyncContext *ac, const char *why, void *data);

/* Per loop: the resolver every dial on it shares (made on first use). */
struct redis_dialer;
struct redis_dialer *redis_dialer_new(struct event_base *base);
void redis_dialer_free(struct redis_dialer **d);

/* Calls fn exactly once: at once for an IP address, later for a name. A dial
 * still resolving when *out is cancelled never calls fn. */
void redis_dial(struct redis_dialer *d, const char *host, int port, redis_dial_fn *fn,
                void *data, struct redis_dial **out);
/* Cancels a dial that has not called back yet; clears *dial (NULL: no-op). */
void redis_dial_cancel(struct redis_dial **dial);

#endif
