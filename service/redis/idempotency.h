/* The idempotency record of a key (scripts/idempotency.lua), scoped by
 * caller and key: claimed in the same round trip as the call's decision,
 * settled with the answer once Twilio acted (or may have), dropped by its
 * owner when nothing was sent. A claim carries its owner and a lease: one
 * whose owner stopped before settling it is answered "outcome unknown" after
 * the lease, never re-sent. Loop thread only, but idempotency_key. */
#ifndef COMMSGATE_REDIS_IDEMPOTENCY_H
#define COMMSGATE_REDIS_IDEMPOTENCY_H

#include <stddef.h>
#include <stdint.h>

#include "redis/policy.h"

struct config;
struct redis_ctx;
struct idempotency_ctx;

/* Time a claim outlives its owner's deadline before a repeat may call it
 * abandoned: the owner's answer may still be on its way to Redis. */
#define IDEMPOTENCY_LEASE_MARGIN_MS 5000

/* The record's key for `key` sent by `caller`; 0, or -1 if it does not fit
 * (KEYS_MAX). Any thread. */
int idempotency_key(char *out, size_t cap, const char *caller, const char *key);

/* The drops that could not reach Redis are kept (up to a bound) and sent
 * again when it is back; `redis` must outlive the context. CG_ENOMEM. */
int idempotency_new(struct redis_ctx *redis, const struct config *cfg,
                    struct idempotency_ctx **out);
/* Clears *c; NULL is a no-op. */
void idempotency_free(struct idempotency_ctx **c);

/* Claims `key` for `owner` with request fingerprint `fp`, for lease_ms.
 * GO (claimed), REPEAT (the stored answer), IN_FLIGHT, or REFUSE with
 * REASON_IDEMPOTENCY_KEY_REUSED (another request) or REASON_OUTCOME_UNKNOWN
 * (its owner stopped before settling it). Same returns as policy_run. */
int idempotency_claim(struct idempotency_ctx *c, const char *key, const char *fp,
                      const char *owner, int64_t lease_ms, struct policy_req *req);
/* The claimed key's answer, replayed to every repeat for its lifetime.
 * Fire-and-forget. */
void idempotency_settle(struct idempotency_ctx *c, const char *key,
                        const struct policy_outcome *o);
/* Nothing was sent: forgets owner's claim (only while owner holds it), so
 * a repeat may send. Kept and sent again when Redis is back if it is down. */
void idempotency_drop(struct idempotency_ctx *c, const char *key, const char *owner);
/* Loop thread, when Redis answers again: sends the drops it kept. */
void idempotency_redis_up(struct idempotency_ctx *c);

#endif
