/* What callers are told when commsgate refuses or fails a call: the reason
 * (google.rpc.ErrorInfo.reason, part of the API), its gRPC status, and the
 * retry hint it carries when nothing more specific is known. One table. */
#ifndef COMMSGATE_CORE_REASON_H
#define COMMSGATE_CORE_REASON_H

#include <grpc/status.h>
#include <stddef.h>
#include <stdint.h>

/* retry: default RetryInfo in ms, -1 for none. A status of OK means the
 * status comes from elsewhere (Twilio's error table). OUTCOME_UNKNOWN is
 * UNKNOWN, not UNAVAILABLE: retry policies (gRPC service configs, Envoy's
 * grpc retry-on) resend UNAVAILABLE blindly, and a blind resend of a request
 * Twilio may have acted on is a second message. */
/*      value                          reason                      gRPC status           retry */
#define REASON_MAP(X)                                                                            \
    X(REASON_NONE,                   NULL,                       OK,                  -1)        \
    X(REASON_INTERNAL,               "INTERNAL",                 INTERNAL,            -1)        \
    X(REASON_OPTED_OUT,              "OPTED_OUT",                FAILED_PRECONDITION, -1)        \
    X(REASON_WHATSAPP_WINDOW_CLOSED, "WHATSAPP_WINDOW_CLOSED",   FAILED_PRECONDITION, -1)        \
    X(REASON_IDEMPOTENCY_KEY_REUSED, "IDEMPOTENCY_KEY_REUSED",   INVALID_ARGUMENT,    -1)        \
    X(REASON_IDEMPOTENCY_IN_FLIGHT,  "IDEMPOTENCY_IN_FLIGHT",    ABORTED,             -1)        \
    X(REASON_VERIFY_SEND_LIMIT,      "VERIFY_SEND_LIMIT",        RESOURCE_EXHAUSTED,  -1)        \
    X(REASON_VERIFY_COOLDOWN,        "VERIFY_COOLDOWN",          RESOURCE_EXHAUSTED,  -1)        \
    X(REASON_VERIFY_CHECK_LIMIT,     "VERIFY_CHECK_LIMIT",       RESOURCE_EXHAUSTED,  -1)        \
    X(REASON_VERIFICATION_NOT_FOUND, "VERIFICATION_NOT_FOUND",   NOT_FOUND,           -1)        \
    X(REASON_ACCOUNT_RATE_LIMITED,   "ACCOUNT_RATE_LIMITED",     RESOURCE_EXHAUSTED,  -1)        \
    X(REASON_REDIS_UNAVAILABLE,      "REDIS_UNAVAILABLE",        UNAVAILABLE,         -1)        \
    X(REASON_DEADLINE,               "DEADLINE",                 DEADLINE_EXCEEDED,   -1)        \
    X(REASON_SHUTTING_DOWN,          "SHUTTING_DOWN",            UNAVAILABLE,         -1)        \
    X(REASON_TWILIO_ERROR,           "TWILIO_ERROR",             OK,                  -1)        \
    X(REASON_TWILIO_UNREACHABLE,     "TWILIO_UNREACHABLE",       UNAVAILABLE,         -1)        \
    X(REASON_OUTCOME_UNKNOWN,        "OUTCOME_UNKNOWN",          UNKNOWN,             -1)        \
    X(REASON_OUTCOME_RESOLVING,      "OUTCOME_RESOLVING",        ABORTED,           1000)        \
    X(REASON_CALLER_UNKNOWN,         "CALLER_UNKNOWN",           UNAUTHENTICATED,     -1)        \
    X(REASON_RPC_NOT_ALLOWED,        "RPC_NOT_ALLOWED",          PERMISSION_DENIED,   -1)        \
    X(REASON_CALLER_QUOTA,           "CALLER_QUOTA_EXHAUSTED",   RESOURCE_EXHAUSTED,  -1)

enum reason {
#define REASON_ENUM(v, name, status, retry) v,
    REASON_MAP(REASON_ENUM)
#undef REASON_ENUM
    REASON_COUNT
};

/* The ErrorInfo reason; NULL for REASON_NONE (no status details are sent)
 * and for out-of-range values. */
const char *reason_name(enum reason r);
/* The status a caller gets for r; GRPC_STATUS_OK where the table says the
 * status comes from elsewhere. */
grpc_status_code reason_status(enum reason r);
/* The default retry hint in ms, -1 for none. */
int64_t reason_retry_ms(enum reason r);

#endif
