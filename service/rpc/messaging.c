/* The Messaging service table. */
#include "rpc/messaging.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commsgate/v1/messaging.pb-c.h"
#include "rpc/rpc_message.h"
#include "rpc/rpc_sms.h"
#include "rpc/rpc_verify.h"
#include "rpc/rpc_voice.h"
#include "rpc/rpc_whatsapp.h"
#include "rpc/server.h"

static char paths[MESSAGING_MAX_METHODS][128];

static const ProtobufCMethodDescriptor *descriptor_of(struct rpc_call *call)
{
    return rpc_call_method(call)->data;
}

/* A method in the .proto that no family has taken yet. */
static void unimplemented_on_call(struct rpc_call *call, const uint8_t *req, size_t len)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "%s is not implemented", descriptor_of(call)->name);
    rpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
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
    const ProtobufCServiceDescriptor *sd = &commsgate__v1__messaging_service__descriptor;
    size_t n = sd->n_methods < MESSAGING_MAX_METHODS ? sd->n_methods : MESSAGING_MAX_METHODS;

    for (size_t i = 0; i < n; i++) {
        snprintf(paths[i], sizeof(paths[i]), "/%s/%s", sd->name, sd->methods[i].name);
        out[i] = (struct rpc_method){.path = paths[i],
                                     .on_call = unimplemented_on_call,
                                     .data = &sd->methods[i]};
    }
    /* Each family sets its handlers; the rest keep the placeholder. */
    rpc_sms_method(find(out, n, "SendSMS"));
    rpc_whatsapp_method(find(out, n, "SendWhatsApp"));
    rpc_voice_method(find(out, n, "PlaceCall"));
    rpc_verify_methods(find(out, n, "StartVerification"), find(out, n, "CheckVerification"));
    rpc_message_method(find(out, n, "GetMessage"));
    return n;
}
