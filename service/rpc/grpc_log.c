#include "rpc/grpc_log.h"

#include <grpc/support/log.h>
#include <string.h>

#include "core/log.h"

static void on_gpr_log(gpr_log_func_args *a)
{
    enum log_level level = a->severity == GPR_LOG_SEVERITY_ERROR  ? LOG_LEVEL_ERROR
                           : a->severity == GPR_LOG_SEVERITY_INFO ? LOG_LEVEL_INFO
                                                                  : LOG_LEVEL_DEBUG;
    const char *file = a->file ? strrchr(a->file, '/') : NULL;

    if (!log_enabled(level))
        return;
    log_event(level, "grpc_core",
              json_pack("{s:s, s:s, s:i}", "msg", a->message ? a->message : "", "source",
                        file ? file + 1 : a->file ? a->file : "", "line", a->line));
}

void grpc_log_route(void)
{
    gpr_set_log_function(on_gpr_log);
}
