/* The queue of unknown outcomes due for resolving (scripts/resolve_queue.lua),
 * shared by every replica: idempotency record keys by the time they are
 * due. A replica takes what is due with a lease, so entries of a replica
 * that died come back to the others. Adds and removals made in one turn of
 * the loop go to Redis as one script call (like account.c's batch): a
 * keyed send's entry costs no EVALSHA of its own. Loop thread only. */
#ifndef COMMSGATE_REDIS_RESOLVE_QUEUE_H
#define COMMSGATE_REDIS_RESOLVE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct event_base;
struct redis_ctx;
struct resolve_queue;

/* base, r and cfg must outlive the queue. CG_ENOMEM. */
int resolve_queue_new(struct event_base *base, struct redis_ctx *r, const struct config *cfg,
                      struct resolve_queue **out);
/* Sends what is still batched (Redis must still be there), frees, clears
 * *q; NULL is a no-op. */
void resolve_queue_free(struct resolve_queue **q);

/* `key` due in `in_ms`; with keep_earlier, an entry already there stays as
 * it is. Fire-and-forget, sent at the end of this loop turn: one lost
 * (Redis down) is put back by the next repeat of the key (rpc/flow.c). */
void resolve_queue_add(struct resolve_queue *q, const char *key, int64_t in_ms,
                       int keep_earlier);
/* Nothing more to resolve for `key`. Fire-and-forget, batched likewise: one
 * lost falls due once and is found settled. */
void resolve_queue_done(struct resolve_queue *q, const char *key);

/* Called once per take: the keys now leased to the caller for lease_ms
 * (n 0 when none was due), or n -1 when Redis failed. keys are borrowed
 * until it returns. */
typedef void resolve_queue_taken_fn(const char *const *keys, int n, void *data);
/* Takes up to `max` due keys for lease_ms (after sending what is batched).
 * CG_EREDIS at once (fn not called) when Redis is down. */
int resolve_queue_take(struct resolve_queue *q, int max, int64_t lease_ms,
                       resolve_queue_taken_fn *fn, void *data);

#endif
