#include "rpc/caller_auth.h"

#include <grpc/grpc_security_constants.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "app.h"
#include "auth/callers.h"
#include "rpc/server.h"

#define MAX_SANS 16

int caller_auth(struct rpc_call *call, void *arg)
{
    struct app *app = arg;
    const struct rpc_method *m = rpc_call_method(call);
    char subject_buf[512], san_buf[2048], auth[512], msg[200];
    char *subject[1], *sans[MAX_SANS];
    struct caller_identity id = {0};

    if (!app->callers)
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

    const struct caller *c = callers_match(app->callers, &id);
    if (!c) {
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
        snprintf(msg, sizeof(msg), "caller %s may not use %s", c->name, rpc ? rpc + 1 : m->path);
        struct rpc_error e = {.code = GRPC_STATUS_PERMISSION_DENIED,
                              .msg = msg,
                              .reason = REASON_RPC_NOT_ALLOWED,
                              .retry_after_ms = -1};
        rpc_call_fail(call, &e);
        return 1;
    }
    rpc_call_set_caller(call, c->name, c);
    return 0;
}
