/* The Twilio error table (codes from Twilio's error dictionary). */
#include "twilio/errors.h"

#include <stddef.h>

#define S(x) GRPC_STATUS_##x
#define A(x) TWILIO_ACTION_##x
#define R(x) REASON_##x

/* code, status, retryable, action, reason, retry after (ms), message. The
 * 10 minutes of 60203 are Verify's own window for sends to one number. */
static const struct twilio_error_info table[] = {
    {20003, S(INTERNAL), 0, A(NONE), R(TWILIO_ERROR), -1, "commsgate's Twilio credentials were rejected"},
    {20404, S(NOT_FOUND), 0, A(NOT_FOUND), R(VERIFICATION_NOT_FOUND), -1, "the Twilio resource was not found"},
    {20429, S(RESOURCE_EXHAUSTED), 1, A(NONE), R(TWILIO_ERROR), -1, "too many concurrent requests to Twilio"},
    {21201, S(INVALID_ARGUMENT), 0, A(NONE), R(TWILIO_ERROR), -1, "no 'To' number was given"},
    {21205, S(INVALID_ARGUMENT), 0, A(NONE), R(TWILIO_ERROR), -1, "the call's TwiML URL is not valid"},
    {21211, S(INVALID_ARGUMENT), 0, A(NONE), R(TWILIO_ERROR), -1, "the 'To' number is not a valid phone number"},
    {21212, S(INVALID_ARGUMENT), 0, A(NONE), R(TWILIO_ERROR), -1, "the 'From' number is not a valid phone number or sender"},
    {21213, S(INVALID_ARGUMENT), 0, A(NONE), R(TWILIO_ERROR), -1, "no 'From' number was given"},
    {21215, S(PERMISSION_DENIED), 0, A(NONE), R(TWILIO_ERROR), -1, "calls to this destination are not enabled on the account"},
    {21216, S(FAILED_PRECONDITION), 0, A(NONE), R(TWILIO_ERROR), -1, "this number cannot be called"},
    {21217, S(INVALID_ARGUMENT), 0, A(NONE), R(TWILIO_ERROR), -1, "the number to call is not valid"},
    {21408, S(PERMISSION_DENIED), 0, A(NONE), R(TWILIO_ERROR), -1, "sending to this region is not enabled on the account"},
    {21606, S(FAILED_PRECONDITION), 0, A(NONE), R(TWILIO_ERROR), -1, "the 'From' number cannot send this message"},
    {21610, S(FAILED_PRECONDITION), 0, A(OPT_OUT), R(OPTED_OUT), -1, "the recipient has opted out (replied STOP)"},
    {21611, S(RESOURCE_EXHAUSTED), 1, A(NONE), R(TWILIO_ERROR), -1, "the sender's message queue is full"},
    {21612, S(FAILED_PRECONDITION), 0, A(NONE), R(TWILIO_ERROR), -1, "Twilio cannot route to this number"},
    {21614, S(INVALID_ARGUMENT), 0, A(NONE), R(TWILIO_ERROR), -1, "the 'To' number is not a mobile number"},
    {21617, S(INVALID_ARGUMENT), 0, A(NONE), R(TWILIO_ERROR), -1, "the message body is longer than 1600 characters"},
    {30003, S(UNAVAILABLE), 0, A(NONE), R(TWILIO_ERROR), -1, "the handset is unreachable"},
    {30005, S(NOT_FOUND), 0, A(NONE), R(TWILIO_ERROR), -1, "unknown destination handset"},
    {30006, S(FAILED_PRECONDITION), 0, A(NONE), R(TWILIO_ERROR), -1, "landline or unreachable carrier"},
    {30429, S(RESOURCE_EXHAUSTED), 1, A(NONE), R(TWILIO_ERROR), -1, "messaging rate limit reached"},
    {60200, S(INVALID_ARGUMENT), 0, A(NONE), R(TWILIO_ERROR), -1, "Twilio Verify rejected a parameter (often the number)"},
    {60202, S(RESOURCE_EXHAUSTED), 0, A(NONE), R(VERIFY_CHECK_LIMIT), -1, "too many check attempts for this verification"},
    {60203, S(RESOURCE_EXHAUSTED), 0, A(NONE), R(VERIFY_SEND_LIMIT), 600000, "too many verification codes sent to this number"},
    {60205, S(FAILED_PRECONDITION), 0, A(NONE), R(TWILIO_ERROR), -1, "SMS cannot be sent to a landline; use channel CALL"},
    {60212, S(RESOURCE_EXHAUSTED), 1, A(NONE), R(TWILIO_ERROR), -1, "too many concurrent verification requests for this number"},
    {60223, S(FAILED_PRECONDITION), 0, A(NONE), R(TWILIO_ERROR), -1, "this delivery channel is disabled or was rejected"},
    {60410, S(PERMISSION_DENIED), 0, A(NONE), R(TWILIO_ERROR), -1, "Twilio Verify's fraud guard blocked this destination"},
    {63016, S(FAILED_PRECONDITION), 0, A(CLOSE_WINDOW), R(WHATSAPP_WINDOW_CLOSED), -1,
     "outside the WhatsApp 24-hour window: only a template (content_sid) can be sent"},
    {63017, S(RESOURCE_EXHAUSTED), 1, A(NONE), R(TWILIO_ERROR), -1, "the account's throughput limit was reached"},
    {63018, S(RESOURCE_EXHAUSTED), 1, A(NONE), R(TWILIO_ERROR), -1, "the WhatsApp sender's rate limit was reached"},
    {63025, S(RESOURCE_EXHAUSTED), 0, A(NONE), R(TWILIO_ERROR), -1, "the WhatsApp template or media limit for this user was reached"},
    {63038, S(RESOURCE_EXHAUSTED), 0, A(NONE), R(TWILIO_ERROR), -1, "the WhatsApp account's daily message limit was reached"},
};

const struct twilio_error_info *twilio_error_lookup(int code)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].code == code)
            return &table[i];
    return NULL;
}

const struct twilio_error_info *twilio_error_for(int code, long http_status)
{
    const struct twilio_error_info *info = twilio_error_lookup(code);
    /* A 404 without a code it knows still means what the request names is
     * not there (Verify's check of a verification it does not know). */
    if (!info && http_status == 404)
        info = twilio_error_lookup(20404);
    return info;
}

grpc_status_code twilio_error_status_for_http(long http)
{
    if (http == 401 || http == 403)
        return GRPC_STATUS_INTERNAL; /* our credentials, not the caller's fault */
    if (http == 404)
        return GRPC_STATUS_NOT_FOUND;
    if (http == 429)
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    if (http >= 500)
        return GRPC_STATUS_UNAVAILABLE;
    if (http >= 400)
        return GRPC_STATUS_FAILED_PRECONDITION;
    return GRPC_STATUS_UNKNOWN;
}
