/* The HTTP server on the loop thread: Twilio's webhooks (signed, bounded,
 * applied once), /metrics, /healthz and /readyz. Everything here runs on the
 * loop thread. */
#ifndef COMMSGATE_WEBHOOK_SERVER_H
#define COMMSGATE_WEBHOOK_SERVER_H

#include <stddef.h>

#include "redis/keys.h"
#include "redis/message_status.h"
#include "redis/redis.h"
#include "webhook/signature.h"

struct app;
struct webhook_ctx;

#define WEBHOOK_MAX_BODY (64 * 1024)
#define WEBHOOK_MAX_PARAMS 256

/* One webhook being applied: its decoded parameters, and the HTTP request
 * to answer once Redis has the change (so Twilio retries if it does not). */
struct webhook_req {
    struct webhook_ctx *ctx;
    struct app *app;
    struct evhttp_request *req; /* NULL once the client is gone */
    struct evhttp_connection *conn;
    const char *route;
    struct signature_param params[WEBHOOK_MAX_PARAMS];
    size_t nparams;
    char *arena; /* decoded names and values, NUL-terminated */
    char dedupe[KEYS_MAX]; /* the key marking this event applied */
    int keyword;           /* inbound: enum inbound_keyword */
    int whatsapp;          /* inbound: from a whatsapp: sender */
    const char *query;     /* the URL's query, or NULL; borrowed from the request */
    char resolves[KEYS_MAX]; /* status: the idempotency record named by ?cg=, or "" */
    /* COMMSGATE_REDIS_WAIT_REPLICAS: Twilio is answered once the replicas
     * have what the event changed (an opt-out above all). */
    struct redis_waiter durable;
};

/* Binds COMMSGATE_HTTP_ADDR on the loop's base; on failure writes why. Call
 * before the loop thread starts. */
int webhook_new(struct app *app, char *errbuf, size_t errlen, struct webhook_ctx **out);
/* Clears *w; NULL is a no-op. Loop thread (or before it started). */
void webhook_free(struct webhook_ctx **w);

struct conns_stats;
/* The port's connections now. Loop thread. */
void webhook_connections(const struct webhook_ctx *w, struct conns_stats *out);

/* The value of a parameter, or NULL. */
const char *webhook_param(const struct webhook_req *w, const char *name);
/* The same with its length: a Body may hold a NUL (every other parameter
 * with one was refused with 400), so it is read by length. */
const char *webhook_param_len(const struct webhook_req *w, const char *name, size_t *len);
/* Answers and frees w (also when the client has gone). */
void webhook_reply(struct webhook_req *w, int status, const char *content_type, const char *body);

/* Handlers, in handlers.c: each ends with webhook_reply. */
void handlers_message_status(struct webhook_req *w);
void handlers_inbound(struct webhook_req *w);
void handlers_call_status(struct webhook_req *w);

/* Metrics kept by the webhook module, for /metrics. */
struct webhook_metrics {
    unsigned long signature_failures;
    unsigned long optouts, optins, help;
    unsigned long statuses[MESSAGE_STATUS_COUNT]; /* by message_status_index */
    unsigned long requests[4][7]; /* route x {2xx, 400, 403, 413, 415, 5xx, other 4xx} */
};
struct webhook_metrics *webhook_metrics(struct webhook_ctx *w);

struct log_limit;
/* The budget of webhook_not_applied lines (handlers.c). Loop thread. */
struct log_limit *webhook_not_applied_log(struct webhook_ctx *w);

#endif
