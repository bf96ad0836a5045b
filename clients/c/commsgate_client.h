/* libcommsgate: a blocking C client for commsgate on gRPC's C core. A call
 * per RPC, each with a deadline; errors carry the gRPC status, its message,
 * Twilio's code and commsgate's reason and retry delay. Requests and
 * responses are the protobuf-c messages generated from
 * commsgate/v1/messaging.proto (installed beside this header). A client may
 * be shared by threads; each call blocks its own thread only. */
#ifndef COMMSGATE_CLIENT_H
#define COMMSGATE_CLIENT_H

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "commsgate/v1/messaging.pb-c.h"

struct cgc_client;

struct cgc_status {
    grpc_status_code code;
    char message[512];
    int twilio_code;   /* the twilio-error-code trailer, 0 if none */
    char reason[64];   /* google.rpc.ErrorInfo reason from status details, "" if none */
    int64_t retry_after_ms; /* google.rpc.RetryInfo, -1 if none */
};

/* Calls grpc_init; target is host:port. */
int cgc_client_new(const char *target, struct cgc_client **out);
/* Clears *c; NULL is a no-op. */
void cgc_client_free(struct cgc_client **c);

/* Calls /commsgate.v1.MessagingService/<method>. On GRPC_STATUS_OK, *resp is the
 * unpacked answer (free it with protobuf_c_message_free_unpacked). Returns
 * st->code. `caller` (may be NULL) is sent as commsgate-caller metadata. */
grpc_status_code cgc_call(struct cgc_client *c, const char *method, const char *caller,
                          const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                          int64_t timeout_ms, ProtobufCMessage **resp, struct cgc_status *st);

/* One call per RPC. On GRPC_STATUS_OK *resp is set; free it with the
 * matching __free_unpacked (or protobuf_c_message_free_unpacked). */
grpc_status_code cgc_send_sms(struct cgc_client *c, const Commsgate__V1__SendSMSRequest *req,
                              int64_t timeout_ms, Commsgate__V1__SendSMSResponse **resp,
                              struct cgc_status *st);
grpc_status_code cgc_send_whatsapp(struct cgc_client *c,
                                   const Commsgate__V1__SendWhatsAppRequest *req,
                                   int64_t timeout_ms, Commsgate__V1__SendWhatsAppResponse **resp,
                                   struct cgc_status *st);
grpc_status_code cgc_place_call(struct cgc_client *c, const Commsgate__V1__PlaceCallRequest *req,
                                int64_t timeout_ms, Commsgate__V1__PlaceCallResponse **resp,
                                struct cgc_status *st);
grpc_status_code cgc_start_verification(struct cgc_client *c,
                                        const Commsgate__V1__StartVerificationRequest *req,
                                        int64_t timeout_ms,
                                        Commsgate__V1__StartVerificationResponse **resp,
                                        struct cgc_status *st);
grpc_status_code cgc_check_verification(struct cgc_client *c,
                                        const Commsgate__V1__CheckVerificationRequest *req,
                                        int64_t timeout_ms,
                                        Commsgate__V1__CheckVerificationResponse **resp,
                                        struct cgc_status *st);
grpc_status_code cgc_get_message(struct cgc_client *c, const Commsgate__V1__GetMessageRequest *req,
                                 int64_t timeout_ms, Commsgate__V1__GetMessageResponse **resp,
                                 struct cgc_status *st);
/* grpc.health.v1 Check for "" : 1 SERVING, 2 NOT_SERVING, ... in *serving. */
grpc_status_code cgc_health(struct cgc_client *c, int64_t timeout_ms, int *serving,
                            struct cgc_status *st);
/* The caller identity sent as commsgate-caller with every call (idempotency
 * keys are scoped by it). Copied; NULL clears it. */
void cgc_set_caller(struct cgc_client *c, const char *caller);

#endif
