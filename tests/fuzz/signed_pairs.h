/* For the fuzzers that sign what they send: a form body's decoded pairs,
 * copied (form_decode's are valid only during its callback) as the
 * signature check takes them. */
#ifndef COMMSGATE_FUZZ_SIGNED_PAIRS_H
#define COMMSGATE_FUZZ_SIGNED_PAIRS_H

#include <string.h>

#include "webhook/signature.h"

#define SIGNED_PAIRS_MAX 256

struct signed_pairs {
    struct signature_param p[SIGNED_PAIRS_MAX];
    size_t n;
    char *next; /* room for the body's length in copies */
};

static inline void signed_pairs_add(const char *n, size_t nl, const char *v, size_t vl,
                                    void *data)
{
    struct signed_pairs *c = data;
    if (c->n == SIGNED_PAIRS_MAX)
        return;
    memcpy(c->next, n, nl);
    memcpy(c->next + nl, v, vl);
    c->p[c->n++] = (struct signature_param){.name = c->next, .nlen = nl,
                                            .value = c->next + nl, .vlen = vl};
    c->next += nl + vl;
}

#endif
