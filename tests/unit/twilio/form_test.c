/* form.c: urlencoding for Twilio, decoding for webhooks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "twilio/form.h"

static void test_encode(void **state)
{
    char buf[256];
    struct form f;
    form_init(&f, buf, sizeof(buf));
    form_add(&f, "To", "+14155551234");
    form_add(&f, "Body", "a b&c=d/é*-._~");
    form_add(&f, "MediaUrl", "https://x/1");
    form_add(&f, "MediaUrl", "https://x/2");
    assert_int_equal(form_ok(&f), CG_OK);
    assert_string_equal(buf, "To=%2B14155551234&Body=a+b%26c%3Dd%2F%C3%A9*-._%7E"
                             "&MediaUrl=https%3A%2F%2Fx%2F1&MediaUrl=https%3A%2F%2Fx%2F2");
    assert_int_equal(f.len, strlen(buf));
}

static void test_overflow(void **state)
{
    char buf[16];
    struct form f;
    form_init(&f, buf, sizeof(buf));
    form_add(&f, "Body", "0123456789");
    assert_int_equal(form_ok(&f), CG_OK);
    form_add(&f, "More", "x");
    assert_int_equal(form_ok(&f), CG_EINVAL);
    assert_true(strlen(buf) < sizeof(buf));
}

struct pairs {
    char text[512];
    int n;
};

static void collect(const char *name, size_t nl, const char *value, size_t vl, void *data)
{
    struct pairs *p = data;
    size_t len = strlen(p->text);
    snprintf(p->text + len, sizeof(p->text) - len, "[%.*s=%.*s]", (int)nl, name, (int)vl, value);
    p->n++;
}

static void test_decode(void **state)
{
    char scratch[256];
    struct pairs p = {{0}, 0};
    const char *body = "Body=STOP+now&From=%2B1415&MediaUrl0=a&MediaUrl0=b&Empty=&Flag";
    assert_int_equal(form_decode(body, strlen(body), collect, &p, scratch, sizeof(scratch)),
                     CG_OK);
    assert_string_equal(p.text, "[Body=STOP now][From=+1415][MediaUrl0=a][MediaUrl0=b][Empty=][Flag=]");

    /* Round trip of what form_add writes. */
    char buf[128];
    struct form f;
    form_init(&f, buf, sizeof(buf));
    form_add(&f, "K y", "v&=+%\xc3\xa9");
    struct pairs q = {{0}, 0};
    assert_int_equal(form_decode(buf, f.len, collect, &q, scratch, sizeof(scratch)), CG_OK);
    assert_string_equal(q.text, "[K y=v&=+%\xc3\xa9]");
}

static void test_decode_rejects_bad_percent(void **state)
{
    char scratch[64];
    struct pairs p = {{0}, 0};
    const char *bad[] = {"a=%zz", "a=%4", "a=%", "%G0=b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (form_decode(bad[i], strlen(bad[i]), collect, &p, scratch, sizeof(scratch)) != CG_EINVAL)
            fail_msg("accepted %s", bad[i]);
    /* Too large for the scratch buffer. */
    char big[100];
    memset(big, 'a', sizeof(big));
    assert_int_equal(form_decode(big, sizeof(big), collect, &p, scratch, sizeof(scratch)),
                     CG_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_decode_rejects_bad_percent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
