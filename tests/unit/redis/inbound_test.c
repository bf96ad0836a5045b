/* inbound.c: which messages are keywords (applying them is in
 * webhook/handlers_test.c, against a real Redis). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "redis/inbound.h"

static void test_keywords(void **state)
{
    static const struct {
        const char *body;
        enum inbound_keyword want;
    } cases[] = {
        {"STOP", INBOUND_STOP},        {" stop\n", INBOUND_STOP},    {"Unsubscribe", INBOUND_STOP},
        {"optout", INBOUND_STOP},      {"REVOKE", INBOUND_STOP},     {"start", INBOUND_START},
        {"UNSTOP", INBOUND_START},     {"yes", INBOUND_START},       {"help", INBOUND_HELP},
        {"INFO", INBOUND_HELP},        {"stop please", INBOUND_NONE}, {"", INBOUND_NONE},
        {"STOPSTOPSTOPSTOPSTOP", INBOUND_NONE}, {"st op", INBOUND_NONE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (inbound_keyword(cases[i].body, strlen(cases[i].body), NULL) != cases[i].want)
            fail_msg("'%s' read as %d", cases[i].body,
                     inbound_keyword(cases[i].body, strlen(cases[i].body), NULL));
    /* By length: a NUL inside makes it no keyword, at any place. */
    assert_int_equal(inbound_keyword("STOP\0please do not", 19, NULL), INBOUND_NONE);
    assert_int_equal(inbound_keyword("STOP\0", 5, NULL), INBOUND_NONE);
    assert_int_equal(inbound_keyword(" stop ", 6, NULL), INBOUND_STOP);
    assert_int_equal(inbound_keyword("STOPPED", 4, NULL), INBOUND_STOP); /* only len bytes */
    assert_int_equal(inbound_keyword(NULL, 0, NULL), INBOUND_NONE);
}

static void test_opt_out_type_wins(void **state)
{
    assert_int_equal(inbound_keyword("please stop texting", 19, "STOP"), INBOUND_STOP);
    assert_int_equal(inbound_keyword("STOP", 4, "start"), INBOUND_START);
    assert_int_equal(inbound_keyword("hi", 2, "HELP"), INBOUND_HELP);
    assert_int_equal(inbound_keyword("STOP", 4, ""), INBOUND_STOP);
}

static void test_names(void **state)
{
    assert_string_equal(inbound_keyword_name(INBOUND_STOP), "stop");
    assert_string_equal(inbound_keyword_name(INBOUND_START), "start");
    assert_string_equal(inbound_keyword_name(INBOUND_HELP), "help");
    assert_string_equal(inbound_keyword_name(INBOUND_NONE), "");
    assert_string_equal(inbound_keyword_name((enum inbound_keyword)9), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keywords),
        cmocka_unit_test(test_opt_out_type_wins),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
