/* The long-lived parts of a running commsgate, wired together by main.c and
 * reached by RPC handlers through rpc_call_app().
 *
 * The work is split over COMMSGATE_LOOPS workers: each is one event-loop
 * thread with everything that loop owns (its Redis connection, its account
 * batching, its Twilio client and connections, its resolve-queue batching,
 * its flows). A call is given to one worker when it arrives and stays on it
 * to its answer, so no worker's state is ever touched by another thread.
 * Worker 0 also runs what exists once per process: the webhook server and
 * the resolver. */
#ifndef COMMSGATE_APP_H
#define COMMSGATE_APP_H

#include <stdatomic.h>

struct account_ctx;
struct callers;
struct caller_auth;
struct admin_ctx;
struct config;
struct flow_ctx;
struct grpc_tls;
struct http_cas;
struct idempotency_ctx;
struct loop_ctx;
struct redis_ctx;
struct resolve_queue;
struct resolver;
struct health_ctx;
struct rpc_server;
struct twilio_ctx;
struct webhook_ctx;

#define APP_MAX_WORKERS 16

struct worker {
    int index;
    struct app *app;
    struct loop_ctx *loop;
    /* Everything below: this worker's loop thread only. */
    struct redis_ctx *redis;
    struct account_ctx *account;
    struct idempotency_ctx *idem;
    struct twilio_ctx *twilio;
    struct resolve_queue *rqueue; /* unknown outcomes due, shared in Redis */
    struct flow_ctx *flows;       /* the calls on this worker; see rpc/flow.h */
};

struct app {
    const struct config *cfg;
    struct worker workers[APP_MAX_WORKERS];
    int nworkers;
    atomic_uint next_worker;   /* round robin over the workers, any thread */
    struct http_cas *cas;      /* the CAs every worker's Twilio client trusts */
    struct resolver *resolver; /* worker 0's loop only: unknown outcomes, resolve/ */
    struct webhook_ctx *webhook; /* worker 0's loop only */
    struct admin_ctx *admin;     /* worker 0's loop only: /metrics and the probes */
    struct health_ctx *health;
    struct reflection *reflection; /* read-only once built: any queue thread */
    struct rpc_server *server;
    struct grpc_tls *tls; /* the gRPC port's certificates; NULL: plaintext */
    struct callers *callers; /* COMMSGATE_CALLERS_FILE, read-only; NULL: none */
    struct caller_auth *auth; /* the file applied to calls, and its counters */
};

/* Any thread: the worker a new call goes to. */
static inline struct worker *app_next_worker(struct app *app)
{
    unsigned i = atomic_fetch_add_explicit(&app->next_worker, 1, memory_order_relaxed);
    return &app->workers[app->nworkers > 1 ? i % (unsigned)app->nworkers : 0];
}

/* The worker that hosts the once-per-process parts. */
static inline struct worker *app_home(struct app *app)
{
    return &app->workers[0];
}

#endif
