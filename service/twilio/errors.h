/* Twilio's error codes: what each means for a commsgate caller (a gRPC
 * status, a reason and a message), whether retrying can help, and what
 * commsgate does about it. One table: the RPC families say which actions
 * apply to them, the table says which code asks for which. */
#ifndef COMMSGATE_TWILIO_ERRORS_H
#define COMMSGATE_TWILIO_ERRORS_H

#include <grpc/status.h>
#include <stdint.h>

#include "core/reason.h"

/* What a refusal asks commsgate to do, beyond answering. Bits, so a family
 * can list the ones that apply to it (flow_kind.twilio_actions). */
enum twilio_action {
    TWILIO_ACTION_NONE = 0,
    TWILIO_ACTION_OPT_OUT = 1 << 0,      /* the recipient replied STOP: record the opt-out */
    TWILIO_ACTION_CLOSE_WINDOW = 1 << 1, /* the WhatsApp window is closed: forget it */
    TWILIO_ACTION_NOT_FOUND = 1 << 2,    /* what the request names does not exist */
};

struct twilio_error_info {
    int code;
    grpc_status_code status;
    int retryable;             /* Twilio did not act; the same request may succeed later */
    enum twilio_action action; /* TWILIO_ACTION_NONE for most */
    /* The caller's reason when the action applies (or there is none):
     * REASON_TWILIO_ERROR unless the code means one of commsgate's own. */
    enum reason reason;
    int64_t retry_after_ms;    /* a known wait (Verify's 10-minute window), else -1 */
    const char *message;
};

/* NULL for a code the table does not know. */
const struct twilio_error_info *twilio_error_lookup(int code);
/* twilio_error_lookup, falling back by HTTP status (404: 20404's row) for
 * a code the table does not know; NULL when neither helps. */
const struct twilio_error_info *twilio_error_for(int code, long http_status);
/* The status for an error whose code is unknown, by HTTP status. */
grpc_status_code twilio_error_status_for_http(long http_status);

#endif
