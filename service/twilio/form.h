/* application/x-www-form-urlencoded bodies: built into a bounded buffer
 * for Twilio requests, and parsed for webhooks. */
#ifndef COMMSGATE_FORM_H
#define COMMSGATE_FORM_H

#include <stddef.h>

struct form {
    char *buf;
    size_t len, cap;
    int overflow;
};

void form_init(struct form *f, char *buf, size_t cap);
/* Appends name=value (percent-encoded; space as '+'). Repeated names are
 * added again, as Twilio expects for MediaUrl and StatusCallbackEvent. */
void form_add(struct form *f, const char *name, const char *value);
/* CG_OK, or CG_EINVAL if anything did not fit. */
int form_ok(const struct form *f);

/* Parses a urlencoded body, calling cb with each decoded pair (not
 * NUL-terminated; valid during the call). scratch holds the decoded text.
 * CG_EINVAL for bad percent-encoding or a body too large for scratch. */
int form_decode(const char *body, size_t len,
                void (*cb)(const char *name, size_t nlen, const char *value, size_t vlen,
                           void *data),
                void *data, char *scratch, size_t scratch_len);

#endif
