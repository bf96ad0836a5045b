/* Blocking unary calls on gRPC's C core: one completion queue per call,
 * plucked for the single batch. */
#include "commsgate_client.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/rpc/status.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

struct cgc_client {
    grpc_channel *channel;
    char caller[128];
};

void cgc_set_caller(struct cgc_client *c, const char *caller)
{
    snprintf(c->caller, sizeof(c->caller), "%s", caller ? caller : "");
}

int cgc_client_new(const char *target, struct cgc_client **out)
{
    struct cgc_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    grpc_init();
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->channel = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    if (!c->channel) {
        free(c);
        grpc_shutdown();
        return -1;
    }
    *out = c;
    return 0;
}

void cgc_client_free(struct cgc_client **cp)
{
    if (!*cp)
        return;
    grpc_channel_destroy((*cp)->channel);
    free(*cp);
    *cp = NULL;
    grpc_shutdown();
}

static void read_details(const grpc_metadata_array *md, struct cgc_status *st)
{
    for (size_t i = 0; i < md->count; i++) {
        const grpc_metadata *m = &md->metadata[i];
        size_t kl = GRPC_SLICE_LENGTH(m->key), vl = GRPC_SLICE_LENGTH(m->value);
        const char *k = (const char *)GRPC_SLICE_START_PTR(m->key);
        const uint8_t *v = GRPC_SLICE_START_PTR(m->value);
        if (kl == 17 && memcmp(k, "twilio-error-code", 17) == 0 && vl < 12) {
            char num[12];
            memcpy(num, v, vl);
            num[vl] = '\0';
            st->twilio_code = atoi(num);
        } else if (kl == 23 && memcmp(k, "grpc-status-details-bin", 23) == 0) {
            Google__Rpc__Status *s = google__rpc__status__unpack(NULL, vl, v);
            for (size_t d = 0; s && d < s->n_details; d++) {
                const Google__Rpc__Any *any = s->details[d];
                if (strstr(any->type_url, "google.rpc.ErrorInfo")) {
                    Google__Rpc__ErrorInfo *e =
                        google__rpc__error_info__unpack(NULL, any->value.len, any->value.data);
                    if (e)
                        snprintf(st->reason, sizeof(st->reason), "%s", e->reason);
                    google__rpc__error_info__free_unpacked(e, NULL);
                } else if (strstr(any->type_url, "google.rpc.RetryInfo")) {
                    Google__Rpc__RetryInfo *r =
                        google__rpc__retry_info__unpack(NULL, any->value.len, any->value.data);
                    if (r && r->retry_delay)
                        st->retry_after_ms =
                            r->retry_delay->seconds * 1000 + r->retry_delay->nanos / 1000000;
                    google__rpc__retry_info__free_unpacked(r, NULL);
                }
            }
            google__rpc__status__free_unpacked(s, NULL);
        }
    }
}

grpc_status_code cgc_call(struct cgc_client *c, const char *method, const char *caller,
                          const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                          int64_t timeout_ms, ProtobufCMessage **resp, struct cgc_status *st)
{
    char path[128];
    grpc_metadata_array initial, trailing;
    grpc_byte_buffer *recv = NULL;
    grpc_slice details = grpc_empty_slice();
    grpc_metadata md;
    grpc_op ops[6];

    memset(st, 0, sizeof(*st));
    st->retry_after_ms = -1;
    *resp = NULL;
    if (method[0] == '/')
        snprintf(path, sizeof(path), "%s", method);
    else
        snprintf(path, sizeof(path), "/commsgate.v1.MessagingService/%s", method);
    if (!caller && c->caller[0])
        caller = c->caller;

    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                         gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_slice path_slice = grpc_slice_from_copied_string(path);
    grpc_call *call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                               path_slice, NULL, deadline, NULL);
    grpc_slice_unref(path_slice);

    size_t n = protobuf_c_message_get_packed_size(req);
    grpc_slice payload = grpc_slice_malloc(n);
    protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(payload));
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&payload, 1);
    grpc_slice_unref(payload);

    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (caller) {
        md.key = grpc_slice_from_static_string("commsgate-caller");
        md.value = grpc_slice_from_copied_string(caller);
        ops[0].data.send_initial_metadata.count = 1;
        ops[0].data.send_initial_metadata.metadata = &md;
    }
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &st->code;
    ops[5].data.recv_status_on_client.status_details = &details;

    if (grpc_call_start_batch(call, ops, 6, (void *)1, NULL) != GRPC_CALL_OK) {
        st->code = GRPC_STATUS_INTERNAL;
        snprintf(st->message, sizeof(st->message), "cannot start the call");
    } else {
        grpc_completion_queue_pluck(cq, (void *)1, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        char *msg = grpc_slice_to_c_string(details);
        snprintf(st->message, sizeof(st->message), "%s", msg);
        gpr_free(msg);
        read_details(&trailing, st);
        if (st->code == GRPC_STATUS_OK && recv) {
            grpc_byte_buffer_reader reader;
            grpc_byte_buffer_reader_init(&reader, recv);
            grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
            grpc_byte_buffer_reader_destroy(&reader);
            *resp = protobuf_c_message_unpack(resp_desc, NULL, GRPC_SLICE_LENGTH(all),
                                              GRPC_SLICE_START_PTR(all));
            grpc_slice_unref(all);
            if (!*resp) {
                st->code = GRPC_STATUS_INTERNAL;
                snprintf(st->message, sizeof(st->message), "unreadable response");
            }
        }
    }
    if (caller)
        grpc_slice_unref(md.value);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return st->code;
}

#define TYPED(fn, method, Req, Resp, desc)                                                        \
    grpc_status_code fn(struct cgc_client *c, const Req *req, int64_t timeout_ms, Resp **resp,   \
                        struct cgc_status *st)                                                   \
    {                                                                                            \
        return cgc_call(c, method, NULL, &req->base, &desc, timeout_ms,                         \
                        (ProtobufCMessage **)resp, st);                                          \
    }

TYPED(cgc_send_sms, "SendSMS", Commsgate__V1__SendSMSRequest, Commsgate__V1__SendSMSResponse,
      commsgate__v1__send_smsresponse__descriptor)
TYPED(cgc_send_whatsapp, "SendWhatsApp", Commsgate__V1__SendWhatsAppRequest,
      Commsgate__V1__SendWhatsAppResponse, commsgate__v1__send_whats_app_response__descriptor)
TYPED(cgc_place_call, "PlaceCall", Commsgate__V1__PlaceCallRequest,
      Commsgate__V1__PlaceCallResponse, commsgate__v1__place_call_response__descriptor)
TYPED(cgc_start_verification, "StartVerification", Commsgate__V1__StartVerificationRequest,
      Commsgate__V1__StartVerificationResponse,
      commsgate__v1__start_verification_response__descriptor)
TYPED(cgc_check_verification, "CheckVerification", Commsgate__V1__CheckVerificationRequest,
      Commsgate__V1__CheckVerificationResponse,
      commsgate__v1__check_verification_response__descriptor)
TYPED(cgc_get_message, "GetMessage", Commsgate__V1__GetMessageRequest,
      Commsgate__V1__GetMessageResponse, commsgate__v1__get_message_response__descriptor)

grpc_status_code cgc_health(struct cgc_client *c, int64_t timeout_ms, int *serving,
                            struct cgc_status *st)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    *serving = 0;
    if (cgc_call(c, "/grpc.health.v1.Health/Check", NULL, &req.base,
                 &grpc__health__v1__health_check_response__descriptor, timeout_ms, &resp,
                 st) == GRPC_STATUS_OK) {
        *serving = (int)((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return st->code;
}
