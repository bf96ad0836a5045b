/* evhttp on the home loop, GET only, small requests: nothing here reads a
 * body. /healthz says the process answers; /readyz that every worker's
 * Redis does (what a load balancer should route on); /metrics renders
 * every module's counters. */
#include "admin/admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/metrics_page.h"
#include "app.h"
#include "core/config.h"
#include "core/error.h"
#include "loop/loop.h"
#include "redis/redis.h"
#include "rpc/health.h"

/* Nothing legitimate sends more: a probe or a scrape is a short GET. */
#define ADMIN_MAX_HEADERS_SIZE 8192
#define ADMIN_TIMEOUT_S 10

struct admin_ctx {
    struct app *app;
    struct evhttp *http;
};

static void reply(struct evhttp_request *req, int status, const char *ctype, struct evbuffer *b)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, status, status < 400 ? "OK" : "Error", b);
}

static void reply_text(struct evhttp_request *req, int status, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (b)
        evbuffer_add(b, text, strlen(text));
    reply(req, status, "text/plain", b);
    if (b)
        evbuffer_free(b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct admin_ctx *a = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

    LOOP_ASSERT_OWNER(loop_base(app_home(a->app)->loop));
    if (!path)
        path = "";
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
        reply_text(req, 405, "GET only\n");
    } else if (strcmp(path, "/healthz") == 0) {
        reply_text(req, 200, "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        int up = health_parts_up(a->app->health), no_master = 0;
        for (int i = 0; !up && i < a->app->nworkers; i++) {
            struct redis_counts rc;
            redis_counts(a->app->workers[i].redis, &rc);
            no_master |= rc.no_master;
        }
        reply_text(req, up ? 200 : 503,
                   up ? "ready\n"
                      : no_master ? "no Redis master: the sentinels name none\n"
                                  : "redis unreachable\n");
    } else if (strcmp(path, "/metrics") == 0) {
        struct evbuffer *b = evbuffer_new();
        if (!b) {
            reply_text(req, 503, "out of memory\n");
            return;
        }
        metrics_page(a->app, b);
        reply(req, 200, "text/plain; version=0.0.4", b);
        evbuffer_free(b);
    } else {
        reply_text(req, 404, "not found\n");
    }
}

int admin_new(struct app *app, char *errbuf, size_t errlen, struct admin_ctx **out)
{
    char host[256];
    int port;
    struct admin_ctx *a = calloc(1, sizeof(*a));

    if (!a)
        return CG_ENOMEM;
    a->app = app;
    a->http = evhttp_new(loop_base(app_home(app)->loop));
    if (!a->http)
        goto fail;
    /* Others are answered 405 here (evhttp's own refusal is a 501). */
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS_SIZE);
    evhttp_set_max_body_size(a->http, 1024); /* a stray POST hears 405, not 413 */
    evhttp_set_timeout(a->http, ADMIN_TIMEOUT_S);
    evhttp_set_gencb(a->http, on_request, a);
    if (config_split_hostport(app->cfg->admin_addr, host, sizeof(host), &port) ||
        evhttp_bind_socket(a->http, host, (ev_uint16_t)port) != 0) {
        snprintf(errbuf, errlen, "cannot listen on COMMSGATE_ADMIN_ADDR=%s (in use or not local)",
                 app->cfg->admin_addr);
        goto fail;
    }
    *out = a;
    return CG_OK;
fail:
    admin_free(&a);
    return CG_ESYS;
}

void admin_free(struct admin_ctx **ap)
{
    struct admin_ctx *a = *ap;
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    free(a);
    *ap = NULL;
}
