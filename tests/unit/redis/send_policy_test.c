/* send_policy.c against a real redis-server: send.lua's typed answers, and
 * the writes to the records it reads (opt-out, window, idempotency). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "redis/keys.h"
#include "redis/send_policy.h"
#include "support/policy_redis.h"

static struct test_redis rs;
static struct config cfg;
static struct test_decision d;

static const char *cmd(const char *a0, const char *a1, const char *a2, const char *a3)
{
    return test_redis_cmd(&rs, a0, a1, a2, a3);
}

static int setup(void **state)
{
    cfg.whatsapp_window_s = 86400;
    cfg.idempotency_ttl_s = 3600;
    cfg.optout_ttl_days = 365;
    test_redis_open(&rs, NULL);
    return 0;
}

static int teardown(void **state)
{
    free(d.res.repeat);
    test_redis_close(&rs);
    return 0;
}

static int flush(void **state)
{
    cmd("FLUSHALL", NULL, NULL, NULL);
    return 0;
}

#define TO "+14155550100"
#define IDEM "cg:{" TO "}:idem:SendSMS:svc:k1"

static enum policy_verdict check(int optout, int window, const char *idem, const char *fp)
{
    struct send_policy_args a = {.to = TO, .check_optout = optout, .needs_window = window,
                                 .idem = idem, .fp = fp};
    assert_int_equal(send_policy_check(rs.r, &cfg, &a, test_decision_arm(&d)), 0);
    test_decision_wait(rs.base, &d);
    return d.res.verdict;
}

static void test_idem_key(void **state)
{
    char k[KEYS_MAX], small[24];
    assert_int_equal(send_policy_idem_key(k, sizeof(k), TO, "SendSMS", "svc", "k1"), 0);
    assert_string_equal(k, IDEM);
    assert_int_equal(send_policy_idem_key(small, sizeof(small), TO, "SendSMS", "svc", "k1"), -1);
}

static void test_claim_settle_repeat(void **state)
{
    static const uint8_t body[] = {0x0a, 0x00, 0x12, 0x03, 'S', 'M', '1'}; /* a NUL inside */
    assert_int_equal(check(1, 0, IDEM, "fp1"), POLICY_GO);
    assert_string_equal(cmd("HGET", IDEM, "state", NULL), "pending");
    assert_true(atoll(cmd("TTL", IDEM, NULL, NULL)) > 0);
    /* Claimed and not settled: a second request with the key waits. */
    assert_int_equal(check(1, 0, IDEM, "fp1"), POLICY_IN_FLIGHT);
    struct policy_outcome o = {.code = 0, .body = (uint8_t *)body, .body_len = sizeof(body)};
    send_policy_settle(rs.r, &cfg, IDEM, &o);
    assert_int_equal(check(1, 0, IDEM, "fp1"), POLICY_REPEAT);
    assert_non_null(d.res.repeat);
    assert_int_equal(d.res.repeat->code, 0);
    assert_int_equal(d.res.repeat->body_len, sizeof(body));
    assert_memory_equal(d.res.repeat->body, body, sizeof(body));
    /* The same key for another request. */
    assert_int_equal(check(1, 0, IDEM, "fp2"), POLICY_REFUSE);
    assert_int_equal(d.res.reason, REASON_IDEMPOTENCY_KEY_REUSED);
}

static void test_settled_refusal_repeats_with_its_code(void **state)
{
    assert_int_equal(check(0, 0, IDEM, "fp1"), POLICY_GO);
    struct policy_outcome o = {.code = 14, .msg = "outcome unknown", .twilio_code = 0};
    send_policy_settle(rs.r, &cfg, IDEM, &o);
    assert_int_equal(check(0, 0, IDEM, "fp1"), POLICY_REPEAT);
    assert_int_equal(d.res.repeat->code, 14);
    assert_string_equal(d.res.repeat->msg, "outcome unknown");
    assert_int_equal(d.res.repeat->body_len, 0);
}

static void test_dropped_claim_sends_again(void **state)
{
    assert_int_equal(check(1, 0, IDEM, "fp1"), POLICY_GO);
    send_policy_drop_claim(rs.r, IDEM);
    assert_int_equal(check(1, 0, IDEM, "fp1"), POLICY_GO);
}

static void test_opt_out(void **state)
{
    send_policy_opt_out(rs.r, &cfg, TO);
    assert_int_equal(check(1, 0, "", NULL), POLICY_REFUSE);
    assert_int_equal(d.res.reason, REASON_OPTED_OUT);
    assert_true(atoll(cmd("TTL", "cg:{" TO "}:optout", NULL, NULL)) > 86400 * 364);
    /* Calls and WhatsApp do not check the SMS list. */
    assert_int_equal(check(0, 0, "", NULL), POLICY_GO);
    /* A refusal claims nothing. */
    assert_int_equal(check(1, 0, IDEM, "fp1"), POLICY_REFUSE);
    assert_string_equal(cmd("EXISTS", IDEM, NULL, NULL), "0");
}

static void test_window(void **state)
{
    assert_int_equal(check(0, 1, "", NULL), POLICY_REFUSE);
    assert_int_equal(d.res.reason, REASON_WHATSAPP_WINDOW_CLOSED);
    assert_int_equal(d.res.ms, 0); /* never opened */
    cmd("SET", "cg:{" TO "}:wa", "1000", NULL);
    assert_int_equal(check(0, 1, "", NULL), POLICY_REFUSE);
    assert_int_equal(d.res.ms, 1000 + 86400000LL); /* when it closed */
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL) * 1000); /* just now */
    cmd("SET", "cg:{" TO "}:wa", now, NULL);
    assert_int_equal(check(0, 1, "", NULL), POLICY_GO);
    send_policy_close_window(rs.r, TO);
    assert_int_equal(check(0, 1, "", NULL), POLICY_REFUSE);
}

static void test_lost_scripts(void **state)
{
    cmd("SCRIPT", "FLUSH", NULL, NULL);
    assert_int_equal(check(1, 0, "", NULL), POLICY_NOSCRIPT);
    policy_reload(rs.r);
    assert_int_equal(check(1, 0, "", NULL), POLICY_GO);
}

#define T(fn) cmocka_unit_test_setup(fn, flush)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idem_key),
        T(test_claim_settle_repeat),
        T(test_settled_refusal_repeats_with_its_code),
        T(test_dropped_claim_sends_again),
        T(test_opt_out),
        T(test_window),
        T(test_lost_scripts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
