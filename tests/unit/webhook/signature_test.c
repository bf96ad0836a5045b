/* signature.c: Twilio's published example, port variants, repeated
 * parameters, every altered byte rejected, bodySHA256. (The integration
 * tests check many more cases against Twilio's own helper libraries.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "core/error.h"
#include "webhook/signature.h"

#define P(n, v) {n, sizeof(n) - 1, v, sizeof(v) - 1}

static const char *URL = "https://mycompany.com/myapp.php?foo=1&bar=2";

static void example(struct signature_param *p)
{
    struct signature_param ex[] = {P("To", "+18005551212"), P("CallSid", "CA1234567890ABCDE"),
                                   P("Digits", "1234"), P("From", "+12349013030"),
                                   P("Caller", "+12349013030")};
    memcpy(p, ex, sizeof(ex));
}

static void test_published_example(void **state)
{
    struct signature_param p[5];
    char sig[SIGNATURE_LEN + 1];
    example(p);
    assert_int_equal(signature_compute("12345", URL, p, 5, 0, sig), CG_OK);
    assert_string_equal(sig, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    example(p);
    assert_true(signature_valid("12345", URL, p, 5, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
    /* With the default port written out, as some proxies rebuild it. */
    example(p);
    assert_true(signature_valid("12345", "https://mycompany.com:443/myapp.php?foo=1&bar=2", p, 5,
                                "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
}

static void test_every_altered_byte_is_rejected(void **state)
{
    struct signature_param p[5];
    char sig[] = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
    char url[128];
    for (size_t i = 0; i < strlen(sig); i++) {
        char saved = sig[i];
        sig[i] = saved == 'A' ? 'B' : 'A';
        example(p);
        if (signature_valid("12345", URL, p, 5, sig))
            fail_msg("signature byte %zu altered but accepted", i);
        sig[i] = saved;
    }
    for (size_t i = 0; i < strlen(URL); i++) {
        strcpy(url, URL);
        url[i] = url[i] == 'x' ? 'y' : 'x';
        example(p);
        if (signature_valid("12345", url, p, 5, sig))
            fail_msg("URL byte %zu altered but accepted", i);
    }
    char value[] = "+18005551212";
    for (size_t i = 0; i < strlen(value); i++) {
        example(p);
        char v[16];
        strcpy(v, value);
        v[i] = v[i] == '9' ? '8' : '9';
        p[0].value = v;
        if (signature_valid("12345", URL, p, 5, sig))
            fail_msg("parameter byte %zu altered but accepted", i);
    }
    example(p);
    assert_false(signature_valid("12346", URL, p, 5, sig)); /* another token */
    example(p);
    assert_false(signature_valid("12345", URL, p, 4, sig)); /* a parameter dropped */
    example(p);
    assert_false(signature_valid("12345", URL, p, 5, "")); /* none */
    example(p);
    assert_false(signature_valid("12345", URL, p, 5, NULL));
}

static void test_repeated_parameters_are_all_counted(void **state)
{
    struct signature_param a[] = {P("MediaUrl0", "b"), P("Body", "x"), P("MediaUrl0", "a")};
    struct signature_param b[] = {P("Body", "x"), P("MediaUrl0", "a")};
    char sa[SIGNATURE_LEN + 1], sb[SIGNATURE_LEN + 1];
    assert_int_equal(signature_compute("t", "https://h/p", a, 3, 0, sa), CG_OK);
    assert_int_equal(signature_compute("t", "https://h/p", b, 2, 0, sb), CG_OK);
    assert_string_not_equal(sa, sb); /* keeping only one value would be a bug */
    struct signature_param c[] = {P("MediaUrl0", "b"), P("Body", "x"), P("MediaUrl0", "a")};
    assert_true(signature_valid("t", "https://h/p", c, 3, sa));
}

static void test_body_hash(void **state)
{
    const char *body = "{\"a\":1}";
    /* sha256 of {"a":1} */
    const char *good = "https://h/p?bodySHA256=015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862";
    assert_true(signature_body_hash_ok(good, body, strlen(body)));
    assert_false(signature_body_hash_ok(good, "{\"a\":2}", 7));
    assert_false(signature_body_hash_ok("https://h/p", body, strlen(body)));
    assert_false(signature_body_hash_ok("https://h/p?xbodySHA256=015a", body, strlen(body)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_example),
        cmocka_unit_test(test_every_altered_byte_is_rejected),
        cmocka_unit_test(test_repeated_parameters_are_all_counted),
        cmocka_unit_test(test_body_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
