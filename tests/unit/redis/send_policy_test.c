/* send_policy.c against a real redis-server: send.lua's typed answers, and
 * the writes to the records it reads (opt-out, window). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
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

static enum policy_verdict check(int optout, int window)
{
    struct send_policy_args a = {.to = TO, .check_optout = optout, .needs_window = window};
    assert_int_equal(send_policy_check(rs.r, &cfg, &a, test_decision_arm(&d)), 0);
    test_decision_wait(rs.base, &d);
    return d.res.verdict;
}

static void test_opt_out(void **state)
{
    send_policy_opt_out(rs.r, &cfg, TO);
    assert_int_equal(check(1, 0), POLICY_REFUSE);
    assert_int_equal(d.res.reason, REASON_OPTED_OUT);
    assert_true(atoll(cmd("TTL", "cg:{" TO "}:optout", NULL, NULL)) > 86400 * 364);
    /* Calls and WhatsApp do not check the SMS list. */
    assert_int_equal(check(0, 0), POLICY_GO);
}

static void test_window(void **state)
{
    assert_int_equal(check(0, 1), POLICY_REFUSE);
    assert_int_equal(d.res.reason, REASON_WHATSAPP_WINDOW_CLOSED);
    assert_int_equal(d.res.ms, 0); /* never opened */
    cmd("SET", "cg:{" TO "}:wa", "1000", NULL);
    assert_int_equal(check(0, 1), POLICY_REFUSE);
    assert_int_equal(d.res.ms, 1000 + 86400000LL); /* when it closed */
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL) * 1000); /* just now */
    cmd("SET", "cg:{" TO "}:wa", now, NULL);
    assert_int_equal(check(0, 1), POLICY_GO);
    send_policy_close_window(rs.r, TO);
    assert_int_equal(check(0, 1), POLICY_REFUSE);
}

static void test_lost_scripts(void **state)
{
    cmd("SCRIPT", "FLUSH", NULL, NULL);
    assert_int_equal(check(1, 0), POLICY_NOSCRIPT);
    policy_reload(rs.r);
    assert_int_equal(check(1, 0), POLICY_GO);
}

#define T(fn) cmocka_unit_test_setup(fn, flush)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_opt_out),
        T(test_window),
        T(test_lost_scripts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
