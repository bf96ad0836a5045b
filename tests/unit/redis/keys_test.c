/* keys.c: every record's key has its hash tag and suffix; what does not fit
 * is refused, never cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "redis/keys.h"

static void test_formats(void **state)
{
    char k[KEYS_MAX];
    assert_int_equal(keys_make(k, sizeof(k), KEYS_OPTOUT, "+14155550100", NULL), 0);
    assert_string_equal(k, "cg:{+14155550100}:optout");
    assert_int_equal(keys_make(k, sizeof(k), KEYS_IDEMPOTENCY, "key:svc:k1", NULL), 0);
    assert_string_equal(k, "cg:{key:svc:k1}:idem");
    assert_int_equal(keys_make(k, sizeof(k), KEYS_EVENT, "SM1", "delivered"), 0);
    assert_string_equal(k, "cg:{SM1}:ev:delivered");
    assert_int_equal(keys_make(k, sizeof(k), KEYS_INBOUND, "+1", "SM2"), 0);
    assert_string_equal(k, "cg:{+1}:in:SM2");
}

static void test_every_record_distinct(void **state)
{
    char a[KEYS_MAX], b[KEYS_MAX];
    for (int i = 0; i < KEYS_RECORD_COUNT; i++) {
        assert_int_equal(keys_make(a, sizeof(a), i, "t", "x"), 0);
        assert_true(strncmp(a, "cg:{t}:", 7) == 0);
        for (int j = 0; j < i; j++) {
            keys_make(b, sizeof(b), j, "t", "x");
            assert_string_not_equal(a, b);
        }
    }
}

static void test_too_long_is_refused(void **state)
{
    char k[16];
    assert_int_equal(keys_make(k, sizeof(k), KEYS_OPTOUT, "+14155550100", NULL), -1);
    assert_string_equal(k, "");
    assert_int_equal(keys_make(k, sizeof(k), KEYS_RECORD_COUNT, "x", NULL), -1);
    assert_int_equal(keys_make(k, sizeof(k), KEYS_OPTOUT, NULL, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_every_record_distinct),
        cmocka_unit_test(test_too_long_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
