/* twilio/form.c's decoder, on any bytes a webhook body could hold. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "twilio/form.h"

static void on_pair(const char *n, size_t nl, const char *v, size_t vl, void *data)
{
    /* Touch every byte handed over: ASan sees any read past the pair. */
    size_t *sum = data;
    for (size_t i = 0; i < nl; i++)
        *sum += (unsigned char)n[i];
    for (size_t i = 0; i < vl; i++)
        *sum += (unsigned char)v[i];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size + 1), *scratch = malloc(size + 1);
    size_t sum = 0;
    memcpy(body, data, size);
    form_decode(body, size, on_pair, &sum, scratch, size + 1);
    free(body);
    free(scratch);
    return 0;
}
