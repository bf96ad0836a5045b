/* X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + each POST
 * parameter's name and value, sorted)), compared in constant time. Any
 * thread; no allocation beyond OpenSSL's MAC context. */
#ifndef COMMSGATE_WEBHOOK_SIGNATURE_H
#define COMMSGATE_WEBHOOK_SIGNATURE_H

#include <stddef.h>

struct signature_param {
    const char *name;
    size_t nlen;
    const char *value;
    size_t vlen;
};

/* base64 of a SHA-1 HMAC is 28 characters. */
#define SIGNATURE_LEN 28

/* Sorts params in place (by name, then value, bytewise) and writes the
 * signature, NUL-terminated, into out. With `dedupe`, a parameter repeated
 * with the same value counts once. CG_OK or CG_ESYS. */
int signature_compute(const char *token, const char *url, struct signature_param *params,
                      size_t n, int dedupe, char out[SIGNATURE_LEN + 1]);

/* True if `header` is the signature of this request for the URL as given,
 * with its default port added, or with its port removed (Twilio's own
 * libraries accept each), counting repeated parameters either way. */
int signature_valid(const char *token, const char *url, struct signature_param *params, size_t n,
                    const char *header);

/* For JSON bodies: true if the URL's bodySHA256 query parameter is the hex
 * SHA-256 of body. False when the parameter is missing. */
int signature_body_hash_ok(const char *url, const char *body, size_t len);

#endif
