/* The long-lived parts of a running commsgate, wired together by main.c and
 * reached by RPC handlers through rpc_call_app(). */
#ifndef COMMSGATE_APP_H
#define COMMSGATE_APP_H

struct account_ctx;
struct config;
struct flow_ctx;
struct idempotency_ctx;
struct loop_ctx;
struct redis_ctx;
struct resolve_queue;
struct resolver;
struct health_ctx;
struct rpc_server;
struct twilio_ctx;
struct webhook_ctx;

struct app {
    const struct config *cfg;
    struct loop_ctx *loop;
    struct redis_ctx *redis;   /* loop thread only */
    struct account_ctx *account; /* loop thread only */
    struct flow_ctx *flows;    /* the calls' shared state; see rpc/flow.h */
    struct idempotency_ctx *idem; /* loop thread only */
    struct twilio_ctx *twilio; /* loop thread only */
    struct resolve_queue *rqueue; /* loop thread only: unknown outcomes due, shared */
    struct resolver *resolver; /* loop thread only: unknown outcomes, resolve/ */
    struct webhook_ctx *webhook; /* loop thread only */
    struct health_ctx *health;
    struct rpc_server *server;
};

#endif
