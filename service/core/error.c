/* The tables behind error.h, generated from the one X-macro. */
#include "core/error.h"

static const struct {
    const char *name;
    const char *message;
    grpc_status_code status;
} errors[] = {
#define CG_ERROR_ROW(v, name, status, msg) [v] = {name, msg, status},
    CG_ERROR_MAP(CG_ERROR_ROW)
#undef CG_ERROR_ROW
};

static int in_range(int rc)
{
    return rc >= 0 && rc < CG_ERROR_COUNT;
}

const char *error_name(int rc)
{
    return in_range(rc) ? errors[rc].name : "unknown";
}

const char *error_message(int rc)
{
    return in_range(rc) ? errors[rc].message : "unknown error";
}

grpc_status_code error_grpc_status(int rc)
{
    return in_range(rc) ? errors[rc].status : GRPC_STATUS_UNKNOWN;
}
