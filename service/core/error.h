/* One error enum for the whole service. Each value carries its name, a
 * message an operator can read, and the gRPC status a caller receives. */
#ifndef COMMSGATE_ERROR_H
#define COMMSGATE_ERROR_H

#include <grpc/status.h>

/*      value                name               gRPC status                      message */
#define CG_ERROR_MAP(X)                                                                          \
    X(CG_OK,             "ok",             GRPC_STATUS_OK,                  "success")           \
    X(CG_ENOMEM,         "no_memory",      GRPC_STATUS_RESOURCE_EXHAUSTED,  "out of memory")     \
    X(CG_EINVAL,         "invalid",        GRPC_STATUS_INVALID_ARGUMENT,    "invalid argument")  \
    X(CG_ECONFIG,        "config",         GRPC_STATUS_INTERNAL,            "bad configuration") \
    X(CG_ESYS,           "system",         GRPC_STATUS_INTERNAL,            "system call failed") \
    X(CG_EREDIS,         "redis",          GRPC_STATUS_UNAVAILABLE,         "redis is unreachable") \
    X(CG_EHTTP,          "http",           GRPC_STATUS_UNAVAILABLE,         "http request failed") \
    X(CG_ESHUTDOWN,      "shutdown",       GRPC_STATUS_UNAVAILABLE,         "server is shutting down") \
    X(CG_EUNIMPLEMENTED, "unimplemented",  GRPC_STATUS_UNIMPLEMENTED,       "not implemented")   \
    X(CG_EGRPC,          "grpc",           GRPC_STATUS_INTERNAL,            "grpc call failed")

typedef enum cg_error {
#define CG_ERROR_ENUM(v, name, status, msg) v,
    CG_ERROR_MAP(CG_ERROR_ENUM)
#undef CG_ERROR_ENUM
    CG_ERROR_COUNT
} cg_error;

/* Static strings; never NULL, also for out-of-range values. */
const char *error_name(int rc);
const char *error_message(int rc);
grpc_status_code error_grpc_status(int rc);

#endif
