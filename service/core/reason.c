/* The table behind reason.h, generated from the one X-macro. */
#include "core/reason.h"

static const struct {
    const char *name;
    grpc_status_code status;
    int64_t retry_ms;
} reasons[] = {
#define REASON_ROW(v, name, status, retry) [v] = {name, GRPC_STATUS_##status, retry},
    REASON_MAP(REASON_ROW)
#undef REASON_ROW
};

static int in_range(enum reason r)
{
    return (int)r >= 0 && r < REASON_COUNT;
}

const char *reason_name(enum reason r)
{
    return in_range(r) ? reasons[r].name : NULL;
}

grpc_status_code reason_status(enum reason r)
{
    return in_range(r) ? reasons[r].status : GRPC_STATUS_INTERNAL;
}

int64_t reason_retry_ms(enum reason r)
{
    return in_range(r) ? reasons[r].retry_ms : -1;
}
