/* The Messaging service table, and the placeholder handler for methods whose
 * family is not built yet. */
#include "messaging.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../app.h"
#include "../core/error.h"
#include "../core/log.h"
#include "../loop/loop.h"
#include "../redis/redis.h"
#include "commsgate/v1/messaging.pb-c.h"
#include "rpc_sms.h"
#include "rpc_verify.h"
#include "rpc_voice.h"
#include "rpc_whatsapp.h"
#include "server.h"

static char paths[MESSAGING_MAX_METHODS][128];

static const ProtobufCMethodDescriptor *descriptor_of(struct rpc_call *call)
{
    return rpc_call_method(call)->data;
}

static void on_pong(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct rpc_call *call = privdata;
    char msg[160];

    if (!reply) {
        rpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "redis connection lost", NULL);
        return;
    }
    snprintf(msg, sizeof(msg), "%s is not implemented yet", descriptor_of(call)->name);
    rpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
}

/* Loop thread. */
static void placeholder_run(struct loop_task *task)
{
    struct rpc_call *call = rpc_call_from_task(task);
    struct app *app = rpc_call_app(call);
    static const char *ping[] = {"PING"};

    if (rpc_call_is_cancelled(call)) {
        rpc_call_release(call);
        return;
    }
    if (redis_command_argv(app->redis, on_pong, call, 1, ping, NULL))
        rpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "redis is unreachable", NULL);
}

/* Queue thread. */
static void placeholder_on_call(struct rpc_call *call, const uint8_t *req, size_t len)
{
    const ProtobufCMethodDescriptor *md = descriptor_of(call);
    struct app *app = rpc_call_app(call);
    char msg[160];

    ProtobufCMessage *m = protobuf_c_message_unpack(md->input, NULL, len, req);
    if (!m) {
        snprintf(msg, sizeof(msg), "request is not a valid %s", md->input->name);
        rpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, msg, NULL);
        return;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    rpc_call_task(call)->run = placeholder_run;
    loop_post(app->loop, rpc_call_task(call));
}

static struct rpc_method *find(struct rpc_method *m, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(((const ProtobufCMethodDescriptor *)m[i].data)->name, name) == 0)
            return &m[i];
    abort(); /* the .proto and this table disagree: a build-time mistake */
}

size_t messaging_methods(struct rpc_method *out)
{
    const ProtobufCServiceDescriptor *sd = &commsgate__v1__messaging__descriptor;
    size_t n = sd->n_methods < MESSAGING_MAX_METHODS ? sd->n_methods : MESSAGING_MAX_METHODS;

    for (size_t i = 0; i < n; i++) {
        snprintf(paths[i], sizeof(paths[i]), "/%s/%s", sd->name, sd->methods[i].name);
        out[i] = (struct rpc_method){.path = paths[i],
                                     .on_call = placeholder_on_call,
                                     .data = &sd->methods[i]};
    }
    /* Each family sets its handlers; the rest keep the placeholder. */
    rpc_sms_method(find(out, n, "SendSMS"));
    rpc_whatsapp_method(find(out, n, "SendWhatsApp"));
    rpc_voice_method(find(out, n, "PlaceCall"));
    rpc_verify_methods(find(out, n, "StartVerification"), find(out, n, "CheckVerification"));
    return n;
}
