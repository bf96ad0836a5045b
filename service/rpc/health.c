/* The standard health service. Watch streams are the only long-lived calls:
 * each is a watcher on a list, sent a message whenever the status it last
 * saw differs from the current one, one send in flight at a time. */
#include "rpc/health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "core/error.h"
#include "core/log.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/server.h"

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_status;

struct watcher {
    struct watcher *next;
    struct rpc_call *call;
    int known;        /* the service name is one we serve */
    serving_status sent;
    int in_flight;
    int closed;
};

struct health_ctx {
    pthread_mutex_t lock;
    unsigned down;   /* bit per part (a worker's Redis connection) not up */
    int shutting_down;
    struct watcher *watchers;
};

static const char *const served[] = {"", "commsgate.v1.MessagingService", "grpc.health.v1.Health"};

static int is_served(const char *service)
{
    for (size_t i = 0; i < sizeof(served) / sizeof(served[0]); i++)
        if (strcmp(service, served[i]) == 0)
            return 1;
    return 0;
}

int health_new(int parts, struct health_ctx **out)
{
    struct health_ctx *h;
    if (parts < 1 || parts > 32)
        return CG_EINVAL;
    h = calloc(1, sizeof(*h));
    if (!h)
        return CG_ENOMEM;
    h->down = parts == 32 ? ~0u : (1u << parts) - 1;
    pthread_mutex_init(&h->lock, NULL);
    *out = h;
    return CG_OK;
}

void health_free(struct health_ctx **hp)
{
    struct health_ctx *h = *hp;
    if (!h)
        return;
    pthread_mutex_destroy(&h->lock);
    free(h);
    *hp = NULL;
}

/* With h->lock held. */
static serving_status status_for(struct health_ctx *h, int known)
{
    if (!known)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    if (h->down == 0 && !h->shutting_down)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void unlink_watcher(struct health_ctx *h, struct watcher *w)
{
    for (struct watcher **p = &h->watchers; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            return;
        }
    }
}

/* With h->lock held: sends the current status if it differs from the last
 * one sent and nothing is in flight. */
static void push(struct health_ctx *h, struct watcher *w)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    serving_status now = status_for(h, w->known);

    if (w->in_flight || w->closed || now == w->sent)
        return;
    resp.status = now;
    w->sent = now;
    w->in_flight = 1;
    if (rpc_call_send(w->call, &resp.base))
        w->in_flight = 0;
}

/* With h->lock held: ends a watcher whose send is not in flight. Returns the
 * call to end once the lock is dropped. */
static struct rpc_call *end_watcher(struct health_ctx *h, struct watcher *w)
{
    struct rpc_call *call = w->call;
    unlink_watcher(h, w);
    rpc_call_set_data(call, NULL);
    free(w);
    return call;
}

static void finish_ended(struct rpc_call *call, int closed)
{
    if (closed)
        rpc_call_release(call);
    else
        rpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "server is shutting down", NULL);
}

void health_set_serving(struct health_ctx *h, int part, int up)
{
    pthread_mutex_lock(&h->lock);
    if (up)
        h->down &= ~(1u << part);
    else
        h->down |= 1u << part;
    for (struct watcher *w = h->watchers; w; w = w->next)
        push(h, w);
    pthread_mutex_unlock(&h->lock);
}

int health_is_serving(struct health_ctx *h)
{
    pthread_mutex_lock(&h->lock);
    int s = h->down == 0 && !h->shutting_down;
    pthread_mutex_unlock(&h->lock);
    return s;
}

int health_parts_up(struct health_ctx *h)
{
    pthread_mutex_lock(&h->lock);
    int up = h->down == 0;
    pthread_mutex_unlock(&h->lock);
    return up;
}

void health_shutdown(struct health_ctx *h)
{
    pthread_mutex_lock(&h->lock);
    h->shutting_down = 1;
    for (struct watcher *w = h->watchers, *next; w; w = next) {
        next = w->next;
        if (!w->in_flight) { /* the others end when their send completes */
            int closed = w->closed;
            finish_ended(end_watcher(h, w), closed);
        }
    }
    pthread_mutex_unlock(&h->lock);
}

static int unpack_service(struct rpc_call *call, const uint8_t *req, size_t len, char *out,
                          size_t outlen)
{
    Grpc__Health__V1__HealthCheckRequest *r =
        grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (!r) {
        rpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "not a HealthCheckRequest", NULL);
        return -1;
    }
    snprintf(out, outlen, "%s", r->service);
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
    return 0;
}

static void check_on_call(struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct app *app = rpc_call_app(call);
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    char service[256];

    if (unpack_service(call, req, len, service, sizeof(service)))
        return;
    if (!is_served(service)) {
        rpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "unknown service", NULL);
        return;
    }
    pthread_mutex_lock(&app->health->lock);
    resp.status = status_for(app->health, 1);
    pthread_mutex_unlock(&app->health->lock);
    rpc_call_finish(call, GRPC_STATUS_OK, NULL, &resp.base);
}

static void watch_on_call(struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct health_ctx *h = ((struct app *)rpc_call_app(call))->health;
    char service[256];
    struct watcher *w;

    if (unpack_service(call, req, len, service, sizeof(service)))
        return;
    w = calloc(1, sizeof(*w));
    if (!w) {
        rpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
        return;
    }
    w->call = call;
    w->known = is_served(service);
    w->sent = (serving_status)-1; /* nothing sent yet */
    pthread_mutex_lock(&h->lock);
    if (h->shutting_down) {
        pthread_mutex_unlock(&h->lock);
        free(w);
        rpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "server is shutting down", NULL);
        return;
    }
    rpc_call_set_data(call, w);
    w->next = h->watchers;
    h->watchers = w;
    push(h, w);
    pthread_mutex_unlock(&h->lock);
}

static void watch_on_sent(struct rpc_call *call, int ok)
{
    struct health_ctx *h = ((struct app *)rpc_call_app(call))->health;
    struct rpc_call *ended = NULL;
    int closed = 0;

    pthread_mutex_lock(&h->lock);
    struct watcher *w = rpc_call_get_data(call);
    if (w) {
        w->in_flight = 0;
        if (!ok)
            w->closed = 1;
        if (w->closed || h->shutting_down) {
            closed = w->closed;
            ended = end_watcher(h, w);
        } else {
            push(h, w);
        }
    }
    pthread_mutex_unlock(&h->lock);
    if (ended)
        finish_ended(ended, closed);
}

static void watch_on_closed(struct rpc_call *call, int cancelled)
{
    struct health_ctx *h = ((struct app *)rpc_call_app(call))->health;
    struct rpc_call *ended = NULL;

    pthread_mutex_lock(&h->lock);
    struct watcher *w = rpc_call_get_data(call);
    if (w) {
        w->closed = 1;
        if (!w->in_flight)
            ended = end_watcher(h, w);
    }
    pthread_mutex_unlock(&h->lock);
    if (ended)
        rpc_call_release(ended);
}

size_t health_methods(struct rpc_method *out)
{
    /* Open to anyone who reaches the port: probes present no identity. */
    out[0] = (struct rpc_method){.path = "/grpc.health.v1.Health/Check",
                                 .on_call = check_on_call,
                                 .open = 1};
    out[1] = (struct rpc_method){.path = "/grpc.health.v1.Health/Watch",
                                 .open = 1,
                                 .on_call = watch_on_call,
                                 .on_sent = watch_on_sent,
                                 .on_closed = watch_on_closed};
    return 2;
}
