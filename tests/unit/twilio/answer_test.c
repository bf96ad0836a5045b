/* twilio/answer.c: the fields of Twilio's answers, read without a tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "twilio/answer.h"

static int parse(const char *body, struct twilio_answer *a)
{
    return twilio_answer_parse(body, strlen(body), a);
}

/* The shape of Twilio's Message resource (docs.twilio.com), with the
 * nested subresource_uris whose members must not be taken for the
 * message's own. */
static void test_message_fields(void **state)
{
    struct twilio_answer a;
    const char *body =
        "{\"account_sid\": \"AC0123456789abcdef0123456789abcdef\", \"body\": \"Your code\","
        " \"subresource_uris\": {\"sid\": \"SMnested\", \"status\": \"nested\"},"
        " \"error_code\": null, \"num_segments\": \"1\", \"price\": null,"
        " \"sid\": \"SM0123456789abcdef0123456789abcdef\", \"status\": \"queued\","
        " \"tags\": [\"a\", {\"sid\": \"SMinarray\"}], \"to\": \"+14155550100\"}";
    assert_int_equal(parse(body, &a), CG_OK);
    assert_true(a.is_object);
    assert_string_equal(a.sid, "SM0123456789abcdef0123456789abcdef");
    assert_string_equal(a.status, "queued");
    assert_string_equal(a.channel, "");
    assert_int_equal(a.code, 0);
    assert_string_equal(a.message, "");
}

static void test_error_fields(void **state)
{
    struct twilio_answer a;
    assert_int_equal(parse("{\"code\": 21610, \"message\": \"Attempt to send to "
                           "unsubscribed recipient \\u00e9\\n\", \"more_info\": "
                           "\"https://www.twilio.com/docs/errors/21610\", \"status\": 400}",
                           &a),
                     CG_OK);
    assert_int_equal(a.code, 21610);
    assert_string_equal(a.message, "Attempt to send to unsubscribed recipient \xc3\xa9\n");
    /* "status" is a number in an error: no status string. */
    assert_string_equal(a.status, "");
}

static void test_verify_channel(void **state)
{
    struct twilio_answer a;
    assert_int_equal(parse("{\"sid\":\"VE0123456789abcdef0123456789abcdef\","
                           "\"status\":\"pending\",\"channel\":\"whatsapp\","
                           "\"send_code_attempts\":[{\"channel\":\"sms\"}]}",
                           &a),
                     CG_OK);
    assert_string_equal(a.channel, "whatsapp");
    assert_string_equal(a.status, "pending");
}

static void test_values_of_the_wrong_kind_are_absent(void **state)
{
    struct twilio_answer a;
    assert_int_equal(parse("{\"sid\": 5, \"status\": {\"x\": \"y\"}, \"code\": \"21610\","
                           " \"channel\": [\"sms\"], \"message\": null}",
                           &a),
                     CG_OK);
    assert_string_equal(a.sid, "");
    assert_string_equal(a.status, "");
    assert_string_equal(a.channel, "");
    assert_string_equal(a.message, "");
    assert_int_equal(a.code, 0);
    assert_int_equal(parse("{\"code\": 20429.5}", &a), CG_OK);
    assert_int_equal(a.code, 0);
    /* A later duplicate wins, as it does in jansson. */
    assert_int_equal(parse("{\"sid\": \"SMa\", \"sid\": \"SMb\"}", &a), CG_OK);
    assert_string_equal(a.sid, "SMb");
}

static void test_too_long_is_absent_but_a_message_is_cut(void **state)
{
    struct twilio_answer a;
    char body[1200], sid[100], msg[400];
    memset(sid, 'a', sizeof(sid) - 1);
    sid[sizeof(sid) - 1] = '\0';
    memset(msg, 'm', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    snprintf(body, sizeof(body), "{\"sid\": \"SM%s\", \"message\": \"%s\"}", sid, msg);
    assert_int_equal(parse(body, &a), CG_OK);
    assert_string_equal(a.sid, "");
    assert_int_equal(strlen(a.message), sizeof(a.message) - 1);
    /* A NUL in a value: not what any field holds. */
    assert_int_equal(parse("{\"sid\": \"SM1\\u0000SM2\"}", &a), CG_OK);
    assert_string_equal(a.sid, "");
}

static void test_not_an_object_or_not_json_gives_nothing(void **state)
{
    struct twilio_answer a;
    const char *bad[] = {"", "[]", "[{\"sid\": \"SMx\"}]", "\"SMx\"", "42", "null",
                         "{\"sid\": \"SMx\"", "{\"sid\": \"SMx\"} trailing",
                         "{\"sid\": \"SMx\", }", "<html>502 Bad Gateway</html>",
                         "{\"sid\": \"\xff\xfe\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&a, 'x', sizeof(a));
        assert_int_equal(parse(bad[i], &a), CG_EINVAL);
        assert_false(a.is_object);
        assert_string_equal(a.sid, "");
        assert_int_equal(a.code, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_fields),
        cmocka_unit_test(test_error_fields),
        cmocka_unit_test(test_verify_channel),
        cmocka_unit_test(test_values_of_the_wrong_kind_are_absent),
        cmocka_unit_test(test_too_long_is_absent_but_a_message_is_cut),
        cmocka_unit_test(test_not_an_object_or_not_json_gives_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
