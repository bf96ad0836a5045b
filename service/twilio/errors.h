/* Twilio's error codes, what each means for a commsgate caller (a gRPC
 * status and a message), and whether retrying can help. One table. */
#ifndef COMMSGATE_TWILIO_ERRORS_H
#define COMMSGATE_TWILIO_ERRORS_H

#include <grpc/status.h>

struct twilio_error_info {
    int code;
    grpc_status_code status;
    int retryable; /* Twilio did not act; the same request may succeed later */
    const char *message;
};

/* NULL for a code the table does not know. */
const struct twilio_error_info *twilio_error_lookup(int code);
/* The status for an error whose code is unknown, by HTTP status. */
grpc_status_code twilio_error_status_for_http(long http_status);

#endif
