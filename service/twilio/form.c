/* urlencoded forms, as the WHATWG URL standard serialises them. */
#include "twilio/form.h"

#include <string.h>

#include "core/error.h"

void form_init(struct form *f, char *buf, size_t cap)
{
    f->buf = buf;
    f->cap = cap;
    f->len = 0;
    f->overflow = cap == 0;
    if (cap)
        buf[0] = '\0';
}

static void put(struct form *f, char c)
{
    if (f->overflow || f->len + 1 >= f->cap) {
        f->overflow = 1;
        return;
    }
    f->buf[f->len++] = c;
    f->buf[f->len] = '\0';
}

static void put_encoded(struct form *f, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '*') {
            put(f, (char)c);
        } else if (c == ' ') {
            put(f, '+');
        } else {
            put(f, '%');
            put(f, hex[c >> 4]);
            put(f, hex[c & 15]);
        }
    }
}

void form_add(struct form *f, const char *name, const char *value)
{
    if (f->len)
        put(f, '&');
    put_encoded(f, name);
    put(f, '=');
    put_encoded(f, value);
}

int form_ok(const struct form *f)
{
    return f->overflow ? CG_EINVAL : CG_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes [s, s+n) into out; returns its length or -1. */
static long decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    return (long)o;
}

int form_decode(const char *body, size_t len,
                void (*cb)(const char *name, size_t nlen, const char *value, size_t vlen,
                           void *data),
                void *data, char *scratch, size_t scratch_len)
{
    if (len > scratch_len)
        return CG_EINVAL;
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        if (end > i) {
            const char *eq = memchr(body + i, '=', end - i);
            size_t nraw = eq ? (size_t)(eq - (body + i)) : end - i;
            const char *vraw = eq ? eq + 1 : body + end;
            size_t vrawlen = eq ? (size_t)(body + end - vraw) : 0;
            long nl = decode(body + i, nraw, scratch);
            if (nl < 0)
                return CG_EINVAL;
            long vl = decode(vraw, vrawlen, scratch + nl);
            if (vl < 0)
                return CG_EINVAL;
            cb(scratch, (size_t)nl, scratch + nl, (size_t)vl, data);
        }
        i = end + 1;
    }
    return CG_OK;
}
