/* The account-wide send budget shared by every replica (scripts/account.lua):
 * Twilio requests in flight and segments per second. Every take and every
 * finished lease of one loop turn goes to Redis in a single account.lua
 * call, so under load the account costs a fraction of a command per RPC.
 * Loop thread only. */
#ifndef COMMSGATE_REDIS_ACCOUNT_H
#define COMMSGATE_REDIS_ACCOUNT_H

#include <stdint.h>

struct event_base;
struct redis_ctx;
struct account_ctx;
struct account_req;

enum account_result {
    ACCOUNT_OK,       /* lease held; go after `ms` (0: now), when its rate slot comes */
    ACCOUNT_RATE,     /* its rate slot is `ms` away, beyond max_wait_ms: nothing taken */
    ACCOUNT_BUSY,     /* every place in flight is taken; one frees within `ms` */
    ACCOUNT_LOST,     /* Redis failed or went away; nothing is known to be taken */
    ACCOUNT_NOSCRIPT, /* Redis lost the script: reload (policy_reload) and take again */
};

typedef void account_done_fn(struct account_req *req, enum account_result res, int64_t ms);

/* A take. The caller fills the public fields and keeps the struct (and
 * `id`) alive until `done` runs. */
struct account_req {
    const char *id;      /* lease id, unique per request across replicas */
    int cost;            /* segments; 0: only the cap on requests in flight */
    int64_t lease_ms;    /* the lease's lifetime after its slot comes */
    int64_t max_wait_ms; /* longest the request may wait for its rate slot */
    account_done_fn *done;
    void *data;
    char slot[24];            /* set with ACCOUNT_OK: the rate slot, for account_give */
    struct account_req *next; /* private */
};

/* `redis` must outlive the context. rate: segments per second; most:
 * requests in flight. CG_ENOMEM. */
int account_new(struct event_base *base, struct redis_ctx *redis, int rate, int most,
                struct account_ctx **out);

/* Queues a take for this loop turn's batch. `done` is called exactly once,
 * later, never inside this call. */
void account_take(struct account_ctx *a, struct account_req *req);

/* A lease whose request Twilio has answered: its place in flight frees with
 * the next take, or within 50 ms when none comes (its place in the rate
 * stays taken). `id` is copied. */
void account_release(struct account_ctx *a, const char *id);

/* Hands back what a take got when the request was not sent after all: the
 * lease, and `cost`'s place in the rate if `slot` (the take's req->slot)
 * is still the last slot given out. Sent at once; CG_EREDIS when Redis is
 * down (the lease then expires on its own). */
int account_give(struct account_ctx *a, const char *id, int cost, const char *slot);

/* Takes still queued get ACCOUNT_LOST; batches already sent are answered
 * (ACCOUNT_LOST when Redis goes) and need not outlive this. Clears *a
 * first, so done callbacks see it gone: account_release and account_give
 * take a NULL context (and do nothing), account_take does not. NULL is a
 * no-op. */
void account_free(struct account_ctx **a);

#endif
