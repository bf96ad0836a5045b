/* Request text checks: E.164, UTF-8, segments, XML escaping, masking and
 * the field validators, on any string a request could carry. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/text.h"
#include "rpc/validate.h"
#include "twilio/segments.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1), msg[256], out[512];
    struct segments_info seg;
    size_t written;
    memcpy(s, data, size);
    s[size] = '\0';
    text_is_e164(s);
    text_is_https_url(s);
    if (text_utf8_valid(s, size)) {
        text_utf8_chars(s, size);
        segments_count(s, size, &seg);
        text_xml_escape(s, out, sizeof(out), &written);
    }
    text_mask_recipient(s, out, sizeof(out));
    validate_utf8("f", s, msg, sizeof(msg));
    validate_e164("f", s, msg, sizeof(msg));
    validate_idempotency_key(s, msg, sizeof(msg));
    validate_sid("f", s, "SM", msg, sizeof(msg));
    free(s);
    return 0;
}
