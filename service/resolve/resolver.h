/* Resolving unknown outcomes: a send with an idempotency key whose outcome
 * nobody knows (its connection cut after the request left, its replica
 * killed mid-send, a shutdown with the request at Twilio) is looked up in
 * Twilio's own lists, and its record (redis/idempotency.c) settled:
 *
 *   found   the record keeps the SID; a repeat of the key answers OK with
 *           it, and GetMessage knows the message
 *   absent  after COMMSGATE_RESOLVE_CATCHUP_SECONDS past the last moment
 *           Twilio may have received it, still in no list: the record is
 *           deleted and a repeat may send
 *
 * Work comes from the shared queue (redis/resolve_queue.c), so any replica
 * finishes what another started. Every replica sweeps it each
 * COMMSGATE_RESOLVE_INTERVAL_MS. Each resolution is an explicit little
 * state machine: READING the record, LISTING Twilio's pages, WRITING the
 * result. Loop thread only. */
#ifndef COMMSGATE_RESOLVE_RESOLVER_H
#define COMMSGATE_RESOLVE_RESOLVER_H

struct config;
struct evbuffer;
struct event_base;
struct idempotency_ctx;
struct redis_ctx;
struct resolve_queue;
struct resolver;
struct twilio_ctx;

struct resolver_deps {
    struct event_base *base;
    const struct config *cfg;
    struct redis_ctx *redis;
    struct idempotency_ctx *idem;
    struct resolve_queue *queue;
    struct twilio_ctx *twilio;
};

/* Everything in deps must outlive the resolver. CG_ENOMEM. */
int resolver_new(const struct resolver_deps *deps, struct resolver **out);
/* Loop thread: starts sweeping. */
int resolver_start(struct resolver *r);
/* Loop thread: stops; resolutions under way are cancelled (their queue
 * entries come back to another replica when their lease ends). Clears *r;
 * NULL is a no-op. Before twilio_free and redis_free. */
void resolver_free(struct resolver **r);
/* Appends commsgate_resolutions_total{result}. Loop thread. */
void resolver_metrics(struct resolver *r, struct evbuffer *out);

#endif
