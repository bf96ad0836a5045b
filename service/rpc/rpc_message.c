/* GetMessage: the latest delivery status of a message sent through
 * commsgate, as the send and Twilio's status callbacks left it in Redis
 * (redis/message_status.c). One HGETALL. */
#include "rpc/rpc_message.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "commsgate/v1/messaging.pb-c.h"
#include "loop/loop.h"
#include "redis/message_status.h"
#include "rpc/flow.h"

struct lookup {
    struct message_status_get_req get; /* first: the request is the lookup */
    struct rpc_call *call;
    struct worker *w; /* the loop that asks Redis and answers */
    char sid[35];
};

static void on_record(struct message_status_get_req *req, int found,
                      const struct message_status_record *rec)
{
    struct lookup *l = (struct lookup *)req;
    Commsgate__V1__GetMessageResponse resp = COMMSGATE__V1__GET_MESSAGE_RESPONSE__INIT;
    Google__Protobuf__Timestamp updated = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    char msg[96];

    if (found < 0) {
        rpc_call_finish(l->call, GRPC_STATUS_UNAVAILABLE, "Redis is unreachable", NULL);
    } else if (found == 0) {
        snprintf(msg, sizeof(msg), "no message %s is known (unknown, or older than 7 days)",
                 l->sid);
        rpc_call_finish(l->call, GRPC_STATUS_NOT_FOUND, msg, NULL);
    } else {
        resp.sid = l->sid;
        resp.status = (char *)rec->status;
        resp.error_code = rec->error_code;
        updated.seconds = rec->updated_at_ms / 1000;
        updated.nanos = (int32_t)(rec->updated_at_ms % 1000) * 1000000;
        resp.updated_at = &updated;
        rpc_call_finish(l->call, GRPC_STATUS_OK, NULL, &resp.base);
    }
    free(l);
}

static void run(struct loop_task *task)
{
    struct rpc_call *call = rpc_call_from_task(task);
    struct lookup *l = rpc_call_get_data(call);

    l->get.done = on_record;
    if (message_status_get(l->w->redis, l->sid, &l->get)) {
        rpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "Redis is unreachable", NULL);
        free(l);
    }
}

static int valid_sid(const char *s)
{
    if (strlen(s) != 34 || (strncmp(s, "SM", 2) != 0 && strncmp(s, "MM", 2) != 0))
        return 0;
    for (int i = 2; i < 34; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

static void on_call(struct rpc_call *call, const uint8_t *req, size_t len)
{
    struct app *app = rpc_call_app(call);
    Commsgate__V1__GetMessageRequest *r = commsgate__v1__get_message_request__unpack(NULL, len, req);
    struct lookup *l;

    if (!r) {
        rpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "not a valid GetMessageRequest", NULL);
        return;
    }
    if (flow_refuse_nul(call, &commsgate__v1__get_message_request__descriptor, req, len))
        goto done;
    if (!valid_sid(r->sid)) {
        rpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                        "sid: a message SID, SM or MM followed by 32 hex digits", NULL);
        goto done;
    }
    l = calloc(1, sizeof(*l));
    if (!l) {
        rpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
        goto done;
    }
    l->call = call;
    l->w = app_next_worker(app);
    snprintf(l->sid, sizeof(l->sid), "%s", r->sid);
    rpc_call_set_data(call, l);
    rpc_call_task(call)->run = run;
    loop_post(l->w->loop, rpc_call_task(call));
done:
    commsgate__v1__get_message_request__free_unpacked(r, NULL);
}

void rpc_message_method(struct rpc_method *m)
{
    m->on_call = on_call;
}
