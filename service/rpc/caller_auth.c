#include "rpc/caller_auth.h"

#include <event2/buffer.h>
#include <grpc/grpc_security_constants.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/callers.h"
#include "core/error.h"
#include "rpc/server.h"

#define MAX_SANS 16

struct caller_auth {
    const struct callers *callers;
    /* Per caller (the file's order): calls let through, and refused. */
    atomic_ulong accepted[CALLERS_MAX], denied[CALLERS_MAX];
    atomic_ulong unknown;
};

int caller_auth_new(const struct callers *callers, struct caller_auth **out)
{
    struct caller_auth *a = calloc(1, sizeof(*a));
    if (!a)
        return CG_ENOMEM;
    a->callers = callers;
    *out = a;
    return CG_OK;
}

void caller_auth_free(struct caller_auth **a)
{
    free(*a);
    *a = NULL;
}

static size_t index_of(const struct caller_auth *a, const struct caller *c)
{
    return (size_t)(c - callers_at(a->callers, 0));
}

int caller_auth(struct rpc_call *call, void *arg)
{
    struct caller_auth *a = arg;
    const struct rpc_method *m = rpc_call_method(call);
    char subject_buf[512], san_buf[2048], auth[512], msg[200];
    char *subject[1], *sans[MAX_SANS];
    struct caller_identity id = {0};

    if (!a->callers)
        return 0;
    if (rpc_call_peer_property(call, GRPC_X509_SUBJECT_PROPERTY_NAME, subject, 1, subject_buf,
                               sizeof(subject_buf)))
        id.subject = subject[0];
    id.nsans = rpc_call_peer_property(call, GRPC_X509_SAN_PROPERTY_NAME, sans, MAX_SANS, san_buf,
                                      sizeof(san_buf));
    id.sans = (const char *const *)sans;
    if (rpc_call_metadata(call, "authorization", auth, sizeof(auth)) > 7 &&
        strncasecmp(auth, "Bearer ", 7) == 0)
        id.bearer = auth + 7;

    const struct caller *c = callers_match(a->callers, &id);
    if (!c) {
        atomic_fetch_add_explicit(&a->unknown, 1, memory_order_relaxed);
        struct rpc_error e = {.code = GRPC_STATUS_UNAUTHENTICATED,
                              .msg = "not a known caller: present a client certificate or a "
                                     "bearer token named in the callers file",
                              .reason = REASON_CALLER_UNKNOWN,
                              .retry_after_ms = -1};
        rpc_call_fail(call, &e);
        return 1;
    }
    const char *rpc = strrchr(m->path, '/');
    if (!caller_may(c, rpc ? rpc + 1 : m->path)) {
        atomic_fetch_add_explicit(&a->denied[index_of(a, c)], 1, memory_order_relaxed);
        snprintf(msg, sizeof(msg), "caller %s may not use %s", c->name, rpc ? rpc + 1 : m->path);
        struct rpc_error e = {.code = GRPC_STATUS_PERMISSION_DENIED,
                              .msg = msg,
                              .reason = REASON_RPC_NOT_ALLOWED,
                              .retry_after_ms = -1};
        rpc_call_fail(call, &e);
        return 1;
    }
    atomic_fetch_add_explicit(&a->accepted[index_of(a, c)], 1, memory_order_relaxed);
    rpc_call_set_caller(call, c->name, c);
    return 0;
}

void caller_auth_metrics(struct caller_auth *a, struct evbuffer *out)
{
    if (!a || !a->callers)
        return;
    evbuffer_add_printf(out, "# HELP commsgate_caller_calls_total Calls by caller (callers file): "
                             "accepted, or denied an RPC it was not given.\n"
                             "# TYPE commsgate_caller_calls_total counter\n");
    for (size_t i = 0; i < callers_count(a->callers); i++) {
        const char *name = callers_at(a->callers, i)->name;
        evbuffer_add_printf(out,
                            "commsgate_caller_calls_total{caller=\"%s\",result=\"accepted\"} %lu\n"
                            "commsgate_caller_calls_total{caller=\"%s\",result=\"denied\"} %lu\n",
                            name, atomic_load_explicit(&a->accepted[i], memory_order_relaxed),
                            name, atomic_load_explicit(&a->denied[i], memory_order_relaxed));
    }
    evbuffer_add_printf(out, "# HELP commsgate_caller_unknown_total Calls from no caller the "
                             "callers file names (UNAUTHENTICATED).\n"
                             "# TYPE commsgate_caller_unknown_total counter\n"
                             "commsgate_caller_unknown_total %lu\n",
                        atomic_load_explicit(&a->unknown, memory_order_relaxed));
}
