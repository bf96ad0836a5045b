/* Twilio's answers (a resource or an error) read for their fields, its
 * Retry-After header, and the media types the webhook port accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "twilio/answer.h"
#include "twilio/http.h"
#include "webhook/edge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct twilio_answer a;
    twilio_answer_parse((const char *)data, size, &a);
    http_parse_retry_after((const char *)data, size);
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    edge_media_type(s);
    free(s);
    return 0;
}
