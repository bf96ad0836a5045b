/* Small, pure checks and transforms on request text. No allocation; any
 * thread. */
#ifndef COMMSGATE_TEXT_H
#define COMMSGATE_TEXT_H

#include <stddef.h>

/* ^\+[1-9]\d{1,14}$ */
int text_is_e164(const char *s);
/* Strict UTF-8: no overlongs, surrogates, code points past U+10FFFF,
 * truncated sequences or NUL bytes. */
int text_utf8_valid(const char *s, size_t len);
/* Code points in valid UTF-8. */
size_t text_utf8_chars(const char *s, size_t len);
/* Decodes one code point of valid UTF-8 at s; returns its byte length. */
size_t text_utf8_next(const char *s, unsigned *cp);
/* Escapes & < > " ' for XML text and attributes. CG_EINVAL if out (outlen
 * bytes, NUL included) is too small or `in` holds a character XML 1.0
 * forbids; out is always NUL-terminated. */
int text_xml_escape(const char *in, char *out, size_t outlen, size_t *written);
/* An absolute https:// URL with a host and no spaces or control characters. */
int text_is_https_url(const char *s);
/* A recipient as logs and caller-facing errors show it, one way everywhere:
 * an E.164 number keeps '+', its first two and last two digits
 * (+14*******00), an email its first character and domain (j***@example.com),
 * a "whatsapp:" prefix is kept; anything else is all stars. out always
 * NUL-terminated; returns out. */
const char *text_mask_recipient(const char *in, char *out, size_t cap);

#endif
