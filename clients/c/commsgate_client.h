/* A small blocking client for commsgate on gRPC's C core: one unary call
 * at a time per thread, deadlines, and errors that carry the gRPC status,
 * its message and Twilio's code. The grown-up library with a call per RPC
 * builds on this (clients issue). */
#ifndef COMMSGATE_CLIENT_H
#define COMMSGATE_CLIENT_H

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

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

/* Calls /commsgate.v1.Messaging/<method>. On GRPC_STATUS_OK, *resp is the
 * unpacked answer (free it with protobuf_c_message_free_unpacked). Returns
 * st->code. `caller` (may be NULL) is sent as commsgate-caller metadata. */
grpc_status_code cgc_call(struct cgc_client *c, const char *method, const char *caller,
                          const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                          int64_t timeout_ms, ProtobufCMessage **resp, struct cgc_status *st);

#endif
