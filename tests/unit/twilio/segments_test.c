/* segments.c: GSM-7 and UCS-2 segment counts at every edge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "twilio/segments.h"

static struct segments_info count(const char *s)
{
    struct segments_info info;
    assert_int_equal(segments_count(s, strlen(s), &info), CG_OK);
    return info;
}

/* n copies of `unit` (a UTF-8 string). */
static const char *rep(const char *unit, int n)
{
    static char buf[8192];
    buf[0] = '\0';
    for (int i = 0; i < n; i++)
        strcat(buf, unit);
    return buf;
}

static void expect(const char *s, enum segments_encoding enc, unsigned segs, unsigned units)
{
    struct segments_info i = count(s);
    if (i.encoding != enc || i.segments != segs || i.units != units)
        fail_msg("got enc %d segs %u units %u, want %d %u %u", i.encoding, i.segments, i.units,
                 enc, segs, units);
}

static void test_gsm7_edges(void **state)
{
    expect("", SEGMENTS_GSM7, 0, 0);
    expect(rep("a", 160), SEGMENTS_GSM7, 1, 160);
    expect(rep("a", 161), SEGMENTS_GSM7, 2, 161);
    expect(rep("a", 306), SEGMENTS_GSM7, 2, 306);
    expect(rep("a", 307), SEGMENTS_GSM7, 3, 307);
    /* GSM-7's own non-ASCII letters stay GSM-7. */
    expect("\xc3\xa9\xc3\xa8\xc3\x87\xce\x94\xc2\xa3", SEGMENTS_GSM7, 1, 5); /* é è Ç Δ £ */
}

static void test_extension_characters_count_two(void **state)
{
    expect("{}[]~|^\\", SEGMENTS_GSM7, 1, 16);
    expect("\xe2\x82\xac", SEGMENTS_GSM7, 1, 2); /* € */
    expect(rep("\xe2\x82\xac", 80), SEGMENTS_GSM7, 1, 160);
    expect(rep("\xe2\x82\xac", 81), SEGMENTS_GSM7, 2, 162);
    /* 152 plain then '€': 154 septets > 153 per part... but <= 160: one segment. */
    char buf[400];
    snprintf(buf, sizeof(buf), "%s\xe2\x82\xac", rep("a", 158));
    expect(buf, SEGMENTS_GSM7, 1, 160);
    /* 152 plain, '€', then 7 more: 161 septets; the escape pair is not split
     * at 153, so part one holds 152 and part two starts with '€'. */
    snprintf(buf, sizeof(buf), "%s\xe2\x82\xac%s", rep("a", 152), "bbbbbbb");
    expect(buf, SEGMENTS_GSM7, 2, 161);
    /* 152*2 + '{' lands the pair on the second boundary: a third part. */
    snprintf(buf, sizeof(buf), "%s{", rep("a", 305));
    expect(buf, SEGMENTS_GSM7, 3, 307);
}

static void test_ucs2(void **state)
{
    expect("`", SEGMENTS_UCS2, 1, 1); /* a backtick is not GSM-7 */
    expect("\xc3\xa7", SEGMENTS_UCS2, 1, 1); /* ç: only capital Ç is GSM-7 */
    char buf[600];
    snprintf(buf, sizeof(buf), "%s\xe4\xbd\xa0", rep("a", 69)); /* 69 + one CJK char */
    expect(buf, SEGMENTS_UCS2, 1, 70);
    snprintf(buf, sizeof(buf), "%s\xe4\xbd\xa0", rep("a", 70));
    expect(buf, SEGMENTS_UCS2, 2, 71);
    snprintf(buf, sizeof(buf), "%s\xe4\xbd\xa0", rep("a", 133));
    expect(buf, SEGMENTS_UCS2, 2, 134);
    snprintf(buf, sizeof(buf), "%s\xe4\xbd\xa0", rep("a", 134));
    expect(buf, SEGMENTS_UCS2, 3, 135);
}

static void test_emoji_surrogate_pairs(void **state)
{
    const char *smile = "\xf0\x9f\x98\x80";
    expect(smile, SEGMENTS_UCS2, 1, 2);
    expect(rep(smile, 35), SEGMENTS_UCS2, 1, 70);
    expect(rep(smile, 36), SEGMENTS_UCS2, 2, 72);
    /* 66 units, an emoji, 66 units: 134 units would fill two parts of 67,
     * but the pair may not straddle the first boundary: three parts. */
    char buf[600];
    char tail[80];
    snprintf(tail, sizeof(tail), "%s", rep("a", 66));
    snprintf(buf, sizeof(buf), "%s%s%s%s", "\xe4\xbd\xa0", rep("a", 65), smile, tail);
    expect(buf, SEGMENTS_UCS2, 3, 134);
    /* 33 emoji and one CJK char: 67 units, one segment. */
    snprintf(buf, sizeof(buf), "%s%s", rep(smile, 33), "\xe4\xbd\xa0");
    expect(buf, SEGMENTS_UCS2, 1, 67);
    struct segments_info i = count(rep(smile, 34)); /* 68 units: one segment (<= 70) */
    assert_int_equal(i.segments, 1);
    assert_int_equal(i.chars, 34);
}

static void test_invalid_utf8(void **state)
{
    struct segments_info i;
    assert_int_equal(segments_count("\xc3\x28", 2, &i), CG_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gsm7_edges),
        cmocka_unit_test(test_extension_characters_count_two),
        cmocka_unit_test(test_ucs2),
        cmocka_unit_test(test_emoji_surrogate_pairs),
        cmocka_unit_test(test_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
