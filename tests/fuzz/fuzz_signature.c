/* The webhook signature check: a form body decoded as the server does, then
 * signed and checked against a header taken from the input's first line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "twilio/form.h"
#include "signed_pairs.h"
#include "webhook/signature.h"



int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1), *scratch = malloc(size + 1), *copies = malloc(size + 1);
    struct signed_pairs c = {.n = 0, .next = copies};
    char sig[SIGNATURE_LEN + 1];
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *nl = memchr(copy, '\n', size);
    const char *header = copy;
    const char *body = nl ? nl + 1 : "";
    if (nl)
        *nl = '\0';
    if (form_decode(body, strlen(body), signed_pairs_add, &c, scratch, size + 1) == 0) {
        signature_compute("token", "https://hooks.example.com/x?y=1", c.p, c.n, 1, sig);
        signature_valid("token", "https://hooks.example.com:443/x", c.p, c.n, header);
        signature_body_hash_ok(header, body, strlen(body));
    }
    free(copy);
    free(scratch);
    free(copies);
    return 0;
}
