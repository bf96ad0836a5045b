/* The idempotency record of a key (scripts/idempotency.lua), scoped by
 * caller and key: claimed in the same round trip as the call's decision,
 * settled with the answer once Twilio acted (or may have), dropped by its
 * owner when nothing was sent. A claim carries its owner and a lease: one
 * whose owner stopped before settling it, or that ended with an unknown
 * outcome, is resolved by asking Twilio (resolve/), never re-sent blindly.
 * Loop thread only, but idempotency_key. */
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

/* What a claim keeps for resolving an unknown outcome: the Twilio list to
 * read ("Messages", "Calls"; "" when it cannot be resolved) and the request
 * as sent (a form; not NUL-terminated needed). */
struct idempotency_send {
    const char *api;
    const char *form;
    size_t form_len;
};

/* Claims `key` for `owner` with request fingerprint `fp`, for lease_ms.
 * GO (claimed), REPEAT (the stored answer), FOUND (resolved: repeat->sid
 * and ->status), IN_FLIGHT, RESOLVING (the outcome is being asked of
 * Twilio), or REFUSE with REASON_IDEMPOTENCY_KEY_REUSED (another request)
 * or REASON_OUTCOME_UNKNOWN (its owner stopped before settling it and it
 * cannot be resolved). Same returns as policy_run. */
int idempotency_claim(struct idempotency_ctx *c, const char *key, const char *fp,
                      const char *owner, int64_t lease_ms, const struct idempotency_send *send,
                      struct policy_req *req);
/* The claimed key's answer, replayed to every repeat for its lifetime.
 * Fire-and-forget. */
void idempotency_settle(struct idempotency_ctx *c, const char *key,
                        const struct policy_outcome *o);
/* Nothing was sent: forgets owner's claim (only while owner holds it), so
 * a repeat may send. Kept and sent again when Redis is back if it is down. */
void idempotency_drop(struct idempotency_ctx *c, const char *key, const char *owner);
/* Loop thread, when Redis answers again: sends the drops it kept. */
void idempotency_redis_up(struct idempotency_ctx *c);
/* The owner cannot tell whether Twilio acted: its claim becomes 'unknown'
 * for resolve/ (one already found stays found). Fire-and-forget: lost, the
 * claim's lease runs out and the next repeat marks it so. */
void idempotency_unknown(struct idempotency_ctx *c, const char *key, const char *owner);

/* --- for resolve/ --- */

enum idempotency_state {
    IDEMPOTENCY_GONE,    /* no record (expired, or resolved absent) */
    IDEMPOTENCY_PENDING, /* claimed; lease_left_ms > 0 while its owner may still act */
    IDEMPOTENCY_DONE,
    IDEMPOTENCY_UNKNOWN,
    IDEMPOTENCY_FOUND,
    IDEMPOTENCY_LOST,    /* Redis failed: nothing known */
};

/* A record as the resolver needs it; strings borrowed for the callback. */
struct idempotency_facts {
    enum idempotency_state state;
    int64_t lease_left_ms;
    const char *api;     /* "" if it cannot be resolved */
    const char *form;    /* NUL-terminated */
    int64_t t0, t1;      /* unix ms: claimed, and the last moment Twilio may
                            have received it (a pending record's lease end) */
};
typedef void idempotency_facts_fn(const struct idempotency_facts *f, void *data);
/* Reads `key`'s record. CG_EREDIS at once (fn not called) if Redis is down. */
int idempotency_read(struct idempotency_ctx *c, const char *key, idempotency_facts_fn *fn,
                     void *data);

/* Called once: ok 1 if Redis took the write (for absent: deleted it), 0
 * if it kept the record (absent: it changed since it was read), -1 if
 * Redis failed. */
typedef void idempotency_written_fn(int ok, void *data);
/* Resolved: Twilio has it as sid. An unknown or abandoned record becomes
 * 'found'; one whose owner may still answer keeps the SID aside, used
 * only if that owner ends unknown or stops; 'done' and 'found' records are
 * left as they are (every repeat gets the same answer). fn may be NULL
 * (fire-and-forget). */
int idempotency_found(struct idempotency_ctx *c, const char *key, const char *sid,
                      const char *status, idempotency_written_fn *fn, void *data);
/* Resolved: Twilio has nothing. Deletes the record if it is still the
 * unsettled claim made at t0, so the key may send again. */
int idempotency_absent(struct idempotency_ctx *c, const char *key, int64_t t0,
                       idempotency_written_fn *fn, void *data);

#endif
