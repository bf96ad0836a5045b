/* verify_limits.c against a real redis-server: sends per window with a
 * cool-down, a place given back, checks per window; typed answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/config.h"
#include "redis/verify_limits.h"
#include "support/policy_redis.h"

static struct test_redis rs;
static struct config cfg;
static struct test_decision d;

static int setup(void **state)
{
    cfg.verify_max_sends = 3;
    cfg.verify_send_window_s = 600;
    cfg.verify_cooldown_s = 0;
    cfg.verify_max_checks = 2;
    cfg.verify_check_window_s = 600;
    test_redis_open(&rs, NULL);
    return 0;
}

static int teardown(void **state)
{
    test_redis_close(&rs);
    return 0;
}

static enum policy_verdict start(const char *to, const char *id)
{
    assert_int_equal(verify_limits_start(rs.r, &cfg, to, id, test_decision_arm(&d)), 0);
    test_decision_wait(rs.base, &d);
    return d.res.verdict;
}

static enum policy_verdict check(const char *to, const char *id)
{
    assert_int_equal(verify_limits_check(rs.r, &cfg, to, id, test_decision_arm(&d)), 0);
    test_decision_wait(rs.base, &d);
    return d.res.verdict;
}

static void test_send_limit_and_give_back(void **state)
{
    assert_int_equal(start("+14155550100", "a"), POLICY_GO);
    assert_int_equal(start("+14155550100", "b"), POLICY_GO);
    assert_int_equal(start("+14155550100", "c"), POLICY_GO);
    assert_int_equal(start("+14155550100", "d"), POLICY_REFUSE);
    assert_int_equal(d.res.reason, REASON_VERIFY_SEND_LIMIT);
    assert_true(d.res.ms > 590000 && d.res.ms <= 600000);
    /* Twilio did not send "c": its place goes back. */
    verify_limits_give_back(rs.r, "+14155550100", "c");
    assert_int_equal(start("+14155550100", "e"), POLICY_GO);
    /* Another number has its own limit. */
    assert_int_equal(start("+14155550101", "a"), POLICY_GO);
}

static void test_cooldown(void **state)
{
    cfg.verify_cooldown_s = 30;
    assert_int_equal(start("+14155550102", "a"), POLICY_GO);
    assert_int_equal(start("+14155550102", "b"), POLICY_REFUSE);
    assert_int_equal(d.res.reason, REASON_VERIFY_COOLDOWN);
    assert_true(d.res.ms > 29000 && d.res.ms <= 30000);
    cfg.verify_cooldown_s = 0;
}

static void test_check_limit_counts_every_check(void **state)
{
    assert_int_equal(check("+14155550103", "a"), POLICY_GO);
    assert_int_equal(check("+14155550103", "b"), POLICY_GO);
    assert_int_equal(check("+14155550103", "c"), POLICY_REFUSE);
    assert_int_equal(d.res.reason, REASON_VERIFY_CHECK_LIMIT);
    assert_true(d.res.ms > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_send_limit_and_give_back),
        cmocka_unit_test(test_cooldown),
        cmocka_unit_test(test_check_limit_counts_every_check),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
