/* libevent's evhttp serving webhooks and the operator endpoints. */
#include "webhook/server.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "loop/loop.h"
#include "redis/redis.h"
#include "twilio/form.h"
#include "webhook/connections.h"
#include "webhook/edge.h"

enum route { ROUTE_STATUS, ROUTE_INBOUND, ROUTE_CALLS, ROUTE_OTHER };
static const char *const route_names[] = {"messages_status", "messages_inbound", "calls_status",
                                          "other"};

struct webhook_ctx {
    struct app *app;
    struct evhttp *http;
    struct edge_guard *guard; /* the listener's accept errors */
    struct conns *conns;      /* the port's connections, capped and timed */
    struct log_limit refusal_log;
    struct log_limit not_applied_log;
    struct webhook_metrics metrics;
};

struct webhook_metrics *webhook_metrics(struct webhook_ctx *w)
{
    return &w->metrics;
}

struct log_limit *webhook_not_applied_log(struct webhook_ctx *w)
{
    return &w->not_applied_log;
}

void webhook_connections(const struct webhook_ctx *w, struct conns_stats *out)
{
    conns_stats(w->conns, out);
}

static int status_bucket(int status)
{
    switch (status) {
    case 400: return 1;
    case 403: return 2;
    case 413: return 3;
    case 415: return 4;
    default: return status >= 500 ? 5 : status >= 400 ? 6 : 0;
    }
}

static enum route route_of(const char *name)
{
    for (int r = 0; r < ROUTE_OTHER; r++)
        if (name && strcmp(name, route_names[r]) == 0)
            return (enum route)r;
    return ROUTE_OTHER;
}

static void send_plain(struct evhttp_request *req, int status, const char *ctype, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    if (body)
        evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(req, status, status < 400 ? "OK" : "Error", b);
    evbuffer_free(b);
}

static void on_conn_close(struct evhttp_connection *conn, void *arg)
{
    struct webhook_req *w = arg;
    w->req = NULL; /* evhttp frees the request with the connection */
}

static void req_free(struct webhook_req *w)
{
    free(w->arena);
    free(w);
}

void webhook_reply(struct webhook_req *w, int status, const char *ctype, const char *body)
{
    LOOP_ASSERT_OWNER(loop_base(app_home(w->app)->loop));
    w->ctx->metrics.requests[route_of(w->route)][status_bucket(status)]++;
    if (w->req) {
        evhttp_connection_set_closecb(w->conn, NULL, NULL);
        send_plain(w->req, status, ctype, body);
    }
    req_free(w);
}

const char *webhook_param_len(const struct webhook_req *w, const char *name, size_t *len)
{
    for (size_t i = 0; i < w->nparams; i++) {
        if (strcmp(w->params[i].name, name) == 0) {
            if (len)
                *len = w->params[i].vlen;
            return w->params[i].value;
        }
    }
    if (len)
        *len = 0;
    return NULL;
}

const char *webhook_param(const struct webhook_req *w, const char *name)
{
    return webhook_param_len(w, name, NULL);
}

struct collect {
    struct webhook_req *w;
    char *next;
    int overflow;
    int nul; /* a decoded NUL where none belongs */
};

static void collect_param(const char *name, size_t nl, const char *value, size_t vl, void *data)
{
    struct collect *c = data;
    struct webhook_req *w = c->w;
    if (w->nparams == WEBHOOK_MAX_PARAMS) {
        c->overflow = 1;
        return;
    }
    struct signature_param *p = &w->params[w->nparams++];
    /* Names, SIDs, numbers and statuses never hold a NUL; a message's Body,
     * which its sender wrote, may, and is kept whole (by length). */
    if (memchr(name, 0, nl) || (memchr(value, 0, vl) && !(nl == 4 && !memcmp(name, "Body", 4))))
        c->nul = 1;
    memcpy(c->next, name, nl);
    c->next[nl] = '\0';
    p->name = c->next;
    p->nlen = nl;
    c->next += nl + 1;
    memcpy(c->next, value, vl);
    c->next[vl] = '\0';
    p->value = c->next;
    p->vlen = vl;
    c->next += vl + 1;
}

/* Refuses a webhook before anything is applied. */
static int refuse(struct webhook_ctx *ctx, struct evhttp_request *req, enum route r, int status,
                  const char *why)
{
    unsigned long suppressed;
    ctx->metrics.requests[r][status_bucket(status)]++;
    /* Anyone can make these happen: a few lines a second, then a count. */
    if (log_limit_allow(&ctx->refusal_log, 10, &suppressed))
        log_event(status == 403 ? LOG_LEVEL_WARN : LOG_LEVEL_INFO, "webhook_refused",
                  json_pack("{s:s, s:i, s:s, s:I}", "route", route_names[r], "status", status,
                            "reason", why, "more_since_last", (json_int_t)suppressed));
    send_plain(req, status, "text/plain", why);
    return 0;
}

static int on_webhook(struct webhook_ctx *ctx, struct evhttp_request *req, enum route r)
{
    const struct config *cfg = ctx->app->cfg;
    struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    const char *ctype = evhttp_find_header(headers, "Content-Type");
    const char *sig = evhttp_find_header(headers, "X-Twilio-Signature");
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char url[2048], *scratch = NULL;
    int json;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
        return refuse(ctx, req, r, 405, "POST only");
    const char *why;
    int bad = edge_check_framing(headers, &why);
    if (bad)
        return refuse(ctx, req, r, bad, why);
    if (len > WEBHOOK_MAX_BODY)
        return refuse(ctx, req, r, 413, "body over 64 KiB");
    enum edge_media media = edge_media_type(ctype);
    json = media == EDGE_MEDIA_JSON;
    if (media == EDGE_MEDIA_OTHER)
        return refuse(ctx, req, r, 415, "expected application/x-www-form-urlencoded");
    /* The URL as Twilio called it, from the configured public base URL, not
     * the Host header: it holds behind proxies and ingresses. */
    if ((size_t)snprintf(url, sizeof(url), "%s%s", cfg->public_url, evhttp_request_get_uri(req)) >=
        sizeof(url))
        return refuse(ctx, req, r, 414, "URL too long");

    struct webhook_req *w = calloc(1, sizeof(*w));
    scratch = malloc(len + 1);
    if (w)
        w->arena = malloc(len * 2 + 2 * WEBHOOK_MAX_PARAMS + 2);
    if (!w || !scratch || !w->arena) {
        free(scratch);
        if (w)
            req_free(w);
        return refuse(ctx, req, r, 503, "out of memory");
    }
    w->ctx = ctx;
    w->app = ctx->app;
    w->route = route_names[r];
    w->query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    evbuffer_copyout(in, scratch, len);
    scratch[len] = '\0';

    int valid;
    if (json) {
        /* JSON bodies: the URL carries bodySHA256 and no parameters are signed. */
        valid = signature_body_hash_ok(url, scratch, len) &&
                signature_valid(cfg->auth_token, url, NULL, 0, sig);
    } else {
        struct collect c = {.w = w, .next = w->arena};
        /* Decoded into the arena's upper part, copied NUL-terminated into its
         * lower part (at most len + 2 bytes a parameter). */
        char *upper = w->arena + len + 2 * WEBHOOK_MAX_PARAMS + 1;
        if (form_decode(scratch, len, collect_param, &c, upper, len + 1) || c.overflow) {
            free(scratch);
            req_free(w);
            return refuse(ctx, req, r, 400, "malformed form body");
        }
        valid = signature_valid(cfg->auth_token, url, w->params, w->nparams, sig);
        if (valid && c.nul) {
            free(scratch);
            req_free(w);
            return refuse(ctx, req, r, 400, "a parameter holds a NUL byte");
        }
    }
    free(scratch);
    if (!valid) {
        ctx->metrics.signature_failures++;
        req_free(w);
        return refuse(ctx, req, r, 403, sig ? "signature does not match" : "no X-Twilio-Signature");
    }
    if (json) {
        req_free(w); /* no JSON webhooks are expected on these routes yet */
        return refuse(ctx, req, r, 415, "JSON webhooks are not used on this route");
    }
    /* Redis down is not refused here: the handler's own command fails, and
     * its 503 names the event (and an opt-out's keyword) in the log. */
    w->req = req;
    w->conn = evhttp_request_get_connection(req);
    evhttp_connection_set_closecb(w->conn, on_conn_close, w);
    switch (r) {
    case ROUTE_STATUS:
        handlers_message_status(w);
        break;
    case ROUTE_INBOUND:
        handlers_inbound(w);
        break;
    default:
        handlers_call_status(w);
        break;
    }
    return 0;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct webhook_ctx *ctx = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

    if (!path)
        path = "";
    if (strcmp(path, "/webhooks/twilio/messages/status") == 0)
        on_webhook(ctx, req, ROUTE_STATUS);
    else if (strcmp(path, "/webhooks/twilio/messages/inbound") == 0)
        on_webhook(ctx, req, ROUTE_INBOUND);
    else if (strcmp(path, "/webhooks/twilio/calls/status") == 0)
        on_webhook(ctx, req, ROUTE_CALLS);
    else /* /metrics and the probes are on the admin listener (admin/admin.c) */
        send_plain(req, 404, "text/plain", "not found\n");
}

int webhook_new(struct app *app, char *errbuf, size_t errlen, struct webhook_ctx **out)
{
    char host[256];
    int port;
    struct webhook_ctx *w = calloc(1, sizeof(*w));

    if (!w)
        return CG_ENOMEM;
    w->app = app;
    w->http = evhttp_new(loop_base(app_home(app)->loop));
    if (!w->http)
        goto fail;
    evhttp_set_max_body_size(w->http, WEBHOOK_MAX_BODY);
    /* A request's headers are bounded (an 8 MB header was accepted before,
     * and held), and a connection that sends nothing for this long is cut. */
    evhttp_set_max_headers_size(w->http, EDGE_MAX_HEADERS_BYTES);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_timeout(w->http, EDGE_TIMEOUT_S);
    evhttp_set_gencb(w->http, on_request, w);
    struct evhttp_bound_socket *bound = NULL;
    if (config_split_hostport(app->cfg->http_addr, host, sizeof(host), &port) ||
        !(bound = evhttp_bind_socket_with_handle(w->http, host, (ev_uint16_t)port))) {
        snprintf(errbuf, errlen, "cannot listen on COMMSGATE_HTTP_ADDR=%s (in use or not local)",
                 app->cfg->http_addr);
        goto fail;
    }
    if (edge_guard_new(loop_base(app_home(app)->loop), evhttp_bound_socket_get_listener(bound),
                       &w->guard) ||
        conns_new(loop_base(app_home(app)->loop), app->cfg->http_max_connections,
                  app->cfg->http_request_timeout_s, &w->conns))
        goto fail;
    evhttp_set_bevcb(w->http, conns_bufferevent, w->conns);
    *out = w;
    return CG_OK;
fail:
    webhook_free(&w);
    return CG_ESYS;
}

void webhook_free(struct webhook_ctx **wp)
{
    struct webhook_ctx *w = *wp;
    if (!w)
        return;
    edge_guard_free(&w->guard); /* before the listener it pauses */
    if (w->http)
        evhttp_free(w->http);
    conns_free(&w->conns); /* after evhttp let its connections go */
    free(w);
    *wp = NULL;
}
