/* SMS segment counting. GSM 03.38: basic characters take one septet, the
 * extension table's two (an escape and the character), and any character
 * outside both makes the whole message UCS-2. A single segment holds 160
 * septets or 70 UTF-16 units; split messages lose room to the concatenation
 * header (153 / 67), and a character is never split across segments. */
#include "twilio/segments.h"

#include "core/error.h"
#include "core/text.h"

/* The GSM 03.38 default alphabet outside ASCII's printable range. */
static const unsigned gsm_basic_extra[] = {
    0x00A3, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC, 0x00F2, 0x00C7, 0x00D8, 0x00F8, 0x00C5,
    0x00E5, 0x0394, 0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8, 0x03A3, 0x0398, 0x039E,
    0x00C6, 0x00E6, 0x00DF, 0x00C9, 0x00A4, 0x00A1, 0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7,
    0x00BF, 0x00E4, 0x00F6, 0x00F1, 0x00FC, 0x00E0, '\n', '\r',
};

/* 1 or 2 septets, or 0 if not GSM-7. */
static int septets(unsigned cp)
{
    switch (cp) {
    case '^': case '{': case '}': case '\\': case '[': case ']': case '~': case '|':
    case 0x20AC: /* euro */
    case '\f':
        return 2;
    case '`': /* ASCII, but not in GSM 03.38 */
        return 0;
    }
    if (cp >= 0x20 && cp < 0x7F)
        return 1; /* printable ASCII, less the cases above */
    for (size_t i = 0; i < sizeof(gsm_basic_extra) / sizeof(gsm_basic_extra[0]); i++)
        if (gsm_basic_extra[i] == cp)
            return 1;
    return 0;
}

/* Packs units of `sizes` (1 or 2 each) into segments of `per`, never
 * splitting a unit. */
static unsigned pack(const char *s, size_t len, int gsm, unsigned per)
{
    unsigned segs = 1, used = 0;
    for (size_t i = 0; i < len;) {
        unsigned cp;
        i += text_utf8_next(s + i, &cp);
        unsigned w = gsm ? (unsigned)septets(cp) : (cp > 0xFFFF ? 2u : 1u);
        if (used + w > per) {
            segs++;
            used = 0;
        }
        used += w;
    }
    return segs;
}

int segments_count(const char *s, size_t len, struct segments_info *out)
{
    unsigned gsm_units = 0, utf16_units = 0, chars = 0;
    int gsm = 1;

    if (!text_utf8_valid(s, len))
        return CG_EINVAL;
    for (size_t i = 0; i < len;) {
        unsigned cp;
        i += text_utf8_next(s + i, &cp);
        int w = septets(cp);
        if (w == 0)
            gsm = 0;
        gsm_units += (unsigned)w;
        utf16_units += cp > 0xFFFF ? 2 : 1;
        chars++;
    }
    out->chars = chars;
    out->encoding = gsm ? SEGMENTS_GSM7 : SEGMENTS_UCS2;
    out->units = gsm ? gsm_units : utf16_units;
    if (out->units == 0)
        out->segments = 0;
    else if (out->units <= (gsm ? 160u : 70u))
        out->segments = 1;
    else
        out->segments = pack(s, len, gsm, gsm ? 153 : 67);
    return CG_OK;
}
