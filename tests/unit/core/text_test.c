/* text.c: E.164, strict UTF-8, XML escaping, https URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "core/error.h"
#include "core/text.h"

static void test_e164(void **state)
{
    const char *good[] = {"+12", "+14155551234", "+123456789012345", "+447911123456"};
    const char *bad[] = {"", "+", "+1", "14155551234", "+04155551234", "+1234567890123456",
                         "+1 415 555 1234", "+1415555123a", "++14155551234", "+1-415"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!text_is_e164(good[i]))
            fail_msg("%s should be E.164", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (text_is_e164(bad[i]))
            fail_msg("'%s' should not be E.164", bad[i]);
}

static void test_utf8(void **state)
{
    const char *good[] = {"", "plain", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                          "\xf4\x8f\xbf\xbf"};
    const char *bad[] = {"\xc3", "\xc3\x28", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80",
                         "\xf4\x90\x80\x80", "\xff", "\x80", "\xf0\x9f\x98"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(text_utf8_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (text_utf8_valid(bad[i], strlen(bad[i])))
            fail_msg("bad UTF-8 #%zu accepted", i);
    assert_false(text_utf8_valid("a\0b", 3)); /* NUL inside */
    assert_int_equal(text_utf8_chars("a\xc3\xa9\xf0\x9f\x98\x80", 7), 3);
}

static void test_xml_escape(void **state)
{
    char out[64];
    size_t n;
    assert_int_equal(text_xml_escape("a&b<c>d\"e'f", out, sizeof(out), &n), CG_OK);
    assert_string_equal(out, "a&amp;b&lt;c&gt;d&quot;e&apos;f");
    assert_int_equal(n, strlen(out));
    assert_int_equal(text_xml_escape("tab\tnew\nline", out, sizeof(out), &n), CG_OK);
    assert_string_equal(out, "tab\tnew\nline");
    assert_int_equal(text_xml_escape("bell\x07", out, sizeof(out), &n), CG_EINVAL);
    /* Too small: refused, and still NUL-terminated. */
    char tiny[6];
    assert_int_equal(text_xml_escape("&&&", tiny, sizeof(tiny), &n), CG_EINVAL);
    assert_true(memchr(tiny, '\0', sizeof(tiny)) != NULL);
    assert_int_equal(text_xml_escape("", out, sizeof(out), &n), CG_OK);
    assert_string_equal(out, "");
}

static void test_mask_recipient(void **state)
{
    char out[64];
    assert_string_equal(text_mask_recipient("+14155550100", out, sizeof(out)), "+14*******00");
    assert_string_equal(text_mask_recipient("whatsapp:+14155550100", out, sizeof(out)),
                        "whatsapp:+14*******00");
    assert_string_equal(text_mask_recipient("+123456", out, sizeof(out)), "+****56");
    assert_string_equal(text_mask_recipient("jane.doe@example.com", out, sizeof(out)),
                        "j***@example.com");
    /* Not a recipient at all (a token pasted in the wrong field): nothing of it. */
    assert_string_equal(text_mask_recipient("sk_live_abcdef", out, sizeof(out)), "**************");
    assert_string_equal(text_mask_recipient("", out, sizeof(out)), "");
    assert_string_equal(text_mask_recipient(NULL, out, sizeof(out)), "");
    /* Cut to fit, always terminated. */
    assert_string_equal(text_mask_recipient("+14155550100", out, 5), "+14*");
}

static void test_https_url(void **state)
{
    assert_true(text_is_https_url("https://example.com/a.png"));
    assert_true(text_is_https_url("https://example.com"));
    assert_false(text_is_https_url("http://example.com/a.png"));
    assert_false(text_is_https_url("https://"));
    assert_false(text_is_https_url("https:///path"));
    assert_false(text_is_https_url("https://exa mple.com"));
    assert_false(text_is_https_url("ftp://example.com"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e164),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_xml_escape),
        cmocka_unit_test(test_https_url),
        cmocka_unit_test(test_mask_recipient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
