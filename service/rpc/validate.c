/* Field checks for RPC handlers. */
#include "rpc/validate.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/text.h"

int validate_utf8(const char *field, const char *value, char *msg, size_t len)
{
    if (text_utf8_valid(value, strlen(value)))
        return 0;
    snprintf(msg, len, "%s: not valid UTF-8", field);
    return -1;
}

int validate_e164(const char *field, const char *value, char *msg, size_t len)
{
    if (!*value) {
        snprintf(msg, len, "%s: required, an E.164 number such as +14155551234", field);
        return -1;
    }
    if (!text_is_e164(value)) {
        /* The value is not echoed: whatever was put there (a token pasted in
         * the wrong field, say) would land in the caller's logs. */
        snprintf(msg, len, "%s: not an E.164 number such as +14155551234 (got %zu characters)",
                 field, strlen(value));
        return -1;
    }
    return 0;
}

int validate_idempotency_key(const char *value, char *msg, size_t len)
{
    size_t n = strlen(value);
    if (n == 0)
        return 0;
    if (n <= 128 && strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789._:-") == n)
        return 0;
    snprintf(msg, len, "idempotency_key: 1 to 128 characters of A-Z a-z 0-9 . _ : -");
    return -1;
}

int validate_sid(const char *field, const char *value, const char *prefix, char *msg, size_t len)
{
    int ok = strlen(value) == 34 && strncmp(value, prefix, 2) == 0;
    for (int i = 2; ok && i < 34; i++)
        ok = isxdigit((unsigned char)value[i]);
    if (ok)
        return 0;
    snprintf(msg, len, "%s: expected %s followed by 32 hex digits", field, prefix);
    return -1;
}
