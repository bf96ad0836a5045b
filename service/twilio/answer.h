/* The fields commsgate reads from Twilio's answer to a POST (a message, a
 * call, a verification, or an error), read with yajl's event parser: no
 * tree is built. jansson's tree of a 1 KB Message answer cost about 13 us of
 * the loop per request; this about 1.5 us. Reads of Twilio's lists
 * (resolve/), which walk arrays, keep jansson.
 *
 * Only top-level members count (a "sid" inside subresource_uris is not the
 * message's). A string that does not fit its field is taken as absent,
 * except the message, which is cut: a SID cut short would name another
 * resource. A body that is not a JSON object, or not valid JSON, gives no
 * fields at all. Pure; any thread. */
#ifndef COMMSGATE_TWILIO_ANSWER_H
#define COMMSGATE_TWILIO_ANSWER_H

#include <stddef.h>

struct twilio_answer {
    int is_object;     /* the body was a valid JSON object */
    char sid[64];      /* "" when absent */
    char status[32];
    char channel[16];  /* Verify: sms, call, email, whatsapp */
    char message[200]; /* an error's text, cut to fit */
    int code;          /* an error's Twilio code; 0 when absent or not an integer */
};

/* Fills *out from body (len bytes, not NUL-terminated). Returns CG_OK, or
 * CG_EINVAL for a body that is not a JSON object (*out is then empty),
 * CG_ENOMEM. */
int twilio_answer_parse(const char *body, size_t len, struct twilio_answer *out);

#endif
