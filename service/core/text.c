/* Text checks for request fields. */
#include "core/text.h"

#include <string.h>

#include "core/error.h"

int text_is_e164(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int text_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned cp, min;
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (i + n > len)
            return 0;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n;
    }
    return 1;
}

size_t text_utf8_next(const char *str, unsigned *cp)
{
    const unsigned char *s = (const unsigned char *)str;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xE0) == 0xC0) {
        *cp = ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if ((s[0] & 0xF0) == 0xE0) {
        *cp = ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        return 3;
    }
    *cp = ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) |
          (s[3] & 0x3Fu);
    return 4;
}

size_t text_utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

int text_xml_escape(const char *in, char *out, size_t outlen, size_t *written)
{
    size_t o = 0;
    if (outlen == 0)
        return CG_EINVAL;
    for (const char *p = in; *p; p++) {
        const char *rep = NULL;
        char one[2] = {*p, 0};
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            goto fail;
        switch (c) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&apos;"; break;
        default: rep = one; break;
        }
        size_t n = strlen(rep);
        if (o + n >= outlen)
            goto fail;
        memcpy(out + o, rep, n);
        o += n;
    }
    out[o] = '\0';
    if (written)
        *written = o;
    return CG_OK;
fail:
    out[o < outlen ? o : outlen - 1] = '\0';
    return CG_EINVAL;
}

int text_is_https_url(const char *s)
{
    if (strncmp(s, "https://", 8) != 0)
        return 0;
    const char *host = s + 8;
    size_t hl = strcspn(host, "/?#");
    if (hl == 0 || host[0] == ':' || host[0] == '@')
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

const char *text_mask_recipient(const char *in, char *out, size_t cap)
{
    size_t n = 0, len;
    const char *at;

    if (!cap)
        return out;
    if (!in)
        in = "";
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (n + 1 < cap)                                                                           \
            out[n++] = (c);                                                                        \
    } while (0)
    if (strncmp(in, "whatsapp:", 9) == 0) {
        for (int i = 0; i < 9; i++)
            PUT(in[i]);
        in += 9;
    }
    len = strlen(in);
    if (text_is_e164(in)) {
        size_t digits = len - 1;
        PUT('+');
        /* The last two digits always; the first two too when that still
         * hides at least three. */
        for (size_t i = 0; i < digits; i++)
            PUT(i + 2 >= digits || (digits > 6 && i < 2) ? in[1 + i] : '*');
    } else if ((at = strchr(in, '@')) && at > in && at[1]) {
        PUT(in[0]);
        PUT('*');
        PUT('*');
        PUT('*');
        for (const char *p = at; *p; p++)
            PUT(*p);
    } else {
        for (size_t i = 0; i < len && i < 16; i++)
            PUT('*');
    }
#undef PUT
    out[n] = '\0';
    return out;
}
