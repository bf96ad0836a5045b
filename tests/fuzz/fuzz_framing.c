/* The webhook port's framing checks on any header list ("Name: value"
 * lines), as evhttp hands them over. */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "webhook/edge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct evkeyvalq h = {.tqh_first = NULL};
    const char *why;
    char *text = malloc(size + 1);
    h.tqh_last = &h.tqh_first;
    memcpy(text, data, size);
    text[size] = '\0';
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        evhttp_add_header(&h, line, colon + 1);
    }
    edge_check_framing(&h, &why);
    evhttp_clear_headers(&h);
    free(text);
    return 0;
}
