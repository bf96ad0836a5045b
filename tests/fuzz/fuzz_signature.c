/* The webhook signature check: a form body decoded as the server does, then
 * signed and checked against a header taken from the input's first line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "twilio/form.h"
#include "webhook/signature.h"

#define MAX_PARAMS 64

struct collect {
    struct signature_param p[MAX_PARAMS];
    size_t n;
    char *next; /* the pairs are valid only during the call: copied here */
};

static void on_pair(const char *n, size_t nl, const char *v, size_t vl, void *data)
{
    struct collect *c = data;
    if (c->n == MAX_PARAMS)
        return;
    memcpy(c->next, n, nl);
    memcpy(c->next + nl, v, vl);
    c->p[c->n++] = (struct signature_param){.name = c->next, .nlen = nl,
                                            .value = c->next + nl, .vlen = vl};
    c->next += nl + vl;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1), *scratch = malloc(size + 1), *copies = malloc(size + 1);
    struct collect c = {.n = 0, .next = copies};
    char sig[SIGNATURE_LEN + 1];
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *nl = memchr(copy, '\n', size);
    const char *header = copy;
    const char *body = nl ? nl + 1 : "";
    if (nl)
        *nl = '\0';
    if (form_decode(body, strlen(body), on_pair, &c, scratch, size + 1) == 0) {
        signature_compute("token", "https://hooks.example.com/x?y=1", c.p, c.n, 1, sig);
        signature_valid("token", "https://hooks.example.com:443/x", c.p, c.n, header);
        signature_body_hash_ok(header, body, strlen(body));
    }
    free(copy);
    free(scratch);
    free(copies);
    return 0;
}
