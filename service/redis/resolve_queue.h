/* The queue of unknown outcomes due for resolving (scripts/resolve_queue.lua),
 * shared by every replica: idempotency record keys by the time they are
 * due. A replica takes what is due with a lease, so entries of a replica
 * that died come back to the others. Loop thread only. */
#ifndef COMMSGATE_REDIS_RESOLVE_QUEUE_H
#define COMMSGATE_REDIS_RESOLVE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct redis_ctx;

/* `key` due in `in_ms`; with keep_earlier, an entry already there stays as
 * it is. Fire-and-forget: CG_EREDIS when Redis is down (a repeat of the key
 * puts it back, see rpc/flow.c). */
int resolve_queue_add(struct redis_ctx *r, const struct config *cfg, const char *key,
                      int64_t in_ms, int keep_earlier);
/* Nothing more to resolve for `key`. Fire-and-forget. */
void resolve_queue_done(struct redis_ctx *r, const char *key);

/* Called once per take: the keys now leased to the caller for lease_ms
 * (n 0 when none was due), or n -1 when Redis failed. keys are borrowed
 * until it returns. */
typedef void resolve_queue_taken_fn(const char *const *keys, int n, void *data);
/* Takes up to `max` due keys for lease_ms. CG_EREDIS at once (fn not
 * called) when Redis is down. */
int resolve_queue_take(struct redis_ctx *r, int max, int64_t lease_ms,
                       resolve_queue_taken_fn *fn, void *data);

#endif
