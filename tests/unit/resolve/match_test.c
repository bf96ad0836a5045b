/* match.c: a request read back from its form, its list query, and the
 * pages of Twilio's lists that hold it, do not, or say to stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "core/error.h"
#include "resolve/match.h"

/* 2026-12-01T22:53:14Z */
#define T0 1796165594000LL
#define DATE "Tue, 01 Dec 2026 22:53:14 +0000"

static struct match_send s;

static int teardown(void **state)
{
    match_send_clear(&s);
    return 0;
}

static json_t *page(const char *items_json, const char *next)
{
    json_t *items = json_loads(items_json, 0, NULL);
    assert_non_null(items);
    return json_pack("{s:o, s:s?}", "messages", items, "next_page_uri", next);
}

static void test_dates(void **state)
{
    assert_int_equal(match_date_ms(DATE), T0);
    assert_int_equal(match_date_ms("Tue, 01 Dec 2026 23:53:14 +0100"), T0);
    assert_int_equal(match_date_ms("2026-12-01T22:53:14Z"), T0);
    assert_int_equal(match_date_ms("2026-12-01T22:53:14+00:00"), T0);
    assert_int_equal(match_date_ms("2026-12-01T22:53:14.123Z"), T0);
    assert_int_equal(match_date_ms("2026-12-01T22:53:14+02:00"), -1); /* not how Twilio writes */
    assert_int_equal(match_date_ms(""), -1);
    assert_int_equal(match_date_ms(NULL), -1);
}

static void test_form_read_back_and_query(void **state)
{
    char q[256];
    assert_int_equal(match_send_parse(&s, "Messages",
                                      "To=%2B14155550100&From=%2B15005550006&Body=hi%20there"
                                      "&StatusCallback=http%3A%2F%2Fx",
                                      T0, T0 + 5000),
                     CG_OK);
    assert_string_equal(s.to, "+14155550100");
    assert_string_equal(s.from, "+15005550006");
    assert_string_equal(s.body, "hi there");
    assert_int_equal(match_query(&s, q, sizeof(q)), CG_OK);
    assert_string_equal(q, "To=%2B14155550100&From=%2B15005550006&PageSize=100");
    assert_int_equal(match_query(&s, q, 20), CG_EINVAL);
    match_send_clear(&s);
    /* A messaging service: no From to filter on; a template: no body. */
    assert_int_equal(match_send_parse(&s, "Messages",
                                      "To=whatsapp%3A%2B1415&MessagingServiceSid=MG1&ContentSid=HX1",
                                      T0, T0),
                     CG_OK);
    assert_string_equal(s.service, "MG1");
    assert_null(s.body);
    assert_int_equal(match_query(&s, q, sizeof(q)), CG_OK);
    assert_string_equal(q, "To=whatsapp%3A%2B1415&PageSize=100");
    match_send_clear(&s);
    assert_int_equal(match_send_parse(&s, "Verifications", "To=%2B1", T0, T0), CG_EINVAL);
    assert_int_equal(match_send_parse(&s, "Calls", "From=%2B1", T0, T0), CG_EINVAL);
}

static enum match_verdict look(const char *items, const char *next, const char **sid)
{
    const char *status = NULL, *n = NULL;
    json_t *p = page(items, next);
    enum match_verdict v = match_page(&s, p, sid, &status, &n);
    static char copy[64];
    if (v == MATCH_FOUND) {
        snprintf(copy, sizeof(copy), "%s", *sid);
        *sid = copy;
    }
    json_decref(p);
    return v;
}

static void test_pages(void **state)
{
    const char *sid = NULL;
    assert_int_equal(match_send_parse(&s, "Messages", "To=%2B1415&From=%2B1500&Body=hi", T0,
                                      T0 + 2000),
                     CG_OK);
    /* Another body, another sender, or made long before: not it. */
    assert_int_equal(
        look("[{\"sid\":\"SM1\",\"to\":\"+1415\",\"from\":\"+1500\",\"body\":\"other\","
             "\"date_created\":\"" DATE "\",\"date_sent\":null},"
             "{\"sid\":\"SM2\",\"to\":\"+1415\",\"from\":\"+1999\",\"body\":\"hi\","
             "\"date_created\":\"" DATE "\",\"date_sent\":null},"
             "{\"sid\":\"SM3\",\"to\":\"+1415\",\"from\":\"+1500\",\"body\":\"hi\","
             "\"date_created\":\"Tue, 01 Dec 2026 20:00:00 +0000\",\"date_sent\":null}]",
             "/2010-04-01/Accounts/AC1/Messages.json?Page=1", &sid),
        MATCH_NEXT);
    assert_int_equal(
        look("[{\"sid\":\"SM4\",\"to\":\"+1415\",\"from\":\"+1500\",\"body\":\"hi\","
             "\"status\":\"sent\",\"date_created\":\"Tue, 01 Dec 2026 22:53:15 +0000\"}]",
             NULL, &sid),
        MATCH_FOUND);
    assert_string_equal(sid, "SM4");
    /* No next page, or one not on Twilio's host: the end. */
    assert_int_equal(look("[]", NULL, &sid), MATCH_END);
    assert_int_equal(look("[]", "https://elsewhere.example/x", &sid), MATCH_END);
    /* An entry sent before the window: everything after it is older. */
    assert_int_equal(
        look("[{\"sid\":\"SM5\",\"to\":\"+1415\",\"from\":\"+1500\",\"body\":\"no\","
             "\"date_created\":\"Tue, 01 Dec 2026 20:00:00 +0000\","
             "\"date_sent\":\"Tue, 01 Dec 2026 20:00:01 +0000\"},"
             "{\"sid\":\"SM6\",\"to\":\"+1415\",\"from\":\"+1500\",\"body\":\"hi\","
             "\"date_created\":\"" DATE "\"}]",
             "/2010-04-01/Accounts/AC1/Messages.json?Page=1", &sid),
        MATCH_END);
    const char *status, *next;
    json_t *notpage = json_pack("{s:s}", "code", "20404");
    assert_int_equal(match_page(&s, notpage, &sid, &status, &next), MATCH_BAD);
    json_decref(notpage);
}

static void test_calls(void **state)
{
    const char *sid = NULL, *status = NULL, *next = NULL;
    assert_int_equal(match_send_parse(&s, "Calls", "To=%2B1415&From=%2B1500&Twiml=%3CResponse%2F%3E",
                                      T0, T0),
                     CG_OK);
    assert_null(s.body);
    json_t *p = json_loads("{\"calls\":[{\"sid\":\"CA1\",\"to\":\"+1415\",\"from\":\"+1500\","
                           "\"status\":\"queued\",\"date_created\":\"" DATE "\"}]}",
                           0, NULL);
    assert_int_equal(match_page(&s, p, &sid, &status, &next), MATCH_FOUND);
    assert_string_equal(sid, "CA1");
    assert_string_equal(status, "queued");
    json_decref(p);
}

static void test_verification_attempts(void **state)
{
    char q[400];
    const char *sid = NULL, *status = NULL, *next = NULL;
    assert_int_equal(match_send_parse(&s, "Attempts", "To=%2B1415&Channel=whatsapp&Locale=en", T0,
                                      T0 + 1000),
                     CG_OK);
    assert_string_equal(s.channel, "whatsapp");
    snprintf(s.service, sizeof(s.service), "VA1");
    assert_int_equal(match_query(&s, q, sizeof(q)), CG_OK);
    /* Created after the window opened, less the clock allowance. */
    assert_string_equal(q, "VerifyServiceSid=VA1&ChannelData.To=%2B1415&Channel=whatsapp"
                           "&DateCreatedAfter=2026-12-01T22%3A52%3A14Z&PageSize=100");
    json_t *p = json_loads(
        "{\"attempts\":[{\"sid\":\"VL1\",\"verification_sid\":\"VE0\",\"channel\":\"sms\","
        "\"channel_data\":{\"to\":\"+1415\"},\"date_created\":\"2026-12-01T22:53:14Z\"},"
        "{\"sid\":\"VL2\",\"verification_sid\":\"VE1\",\"channel\":\"whatsapp\","
        "\"conversion_status\":\"unconverted\",\"channel_data\":{\"to\":\"+1415\"},"
        "\"date_created\":\"2026-12-01T22:53:14Z\"}],"
        "\"meta\":{\"next_page_url\":null}}",
        0, NULL);
    assert_non_null(p);
    assert_int_equal(match_page(&s, p, &sid, &status, &next), MATCH_FOUND);
    assert_string_equal(sid, "VE1"); /* the verification, not the attempt */
    assert_string_equal(status, "pending");
    json_decref(p);
    p = json_loads("{\"attempts\":[],\"meta\":{\"next_page_url\":"
                   "\"https://verify.twilio.com/v2/Attempts?PageToken=PA100\"}}",
                   0, NULL);
    assert_int_equal(match_page(&s, p, &sid, &status, &next), MATCH_NEXT);
    assert_string_equal(next, "https://verify.twilio.com/v2/Attempts?PageToken=PA100");
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dates),
        cmocka_unit_test_teardown(test_form_read_back_and_query, teardown),
        cmocka_unit_test_teardown(test_pages, teardown),
        cmocka_unit_test_teardown(test_calls, teardown),
        cmocka_unit_test_teardown(test_verification_attempts, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
