/* policy.c and the Lua scripts, against a real redis-server: every outcome
 * of each script, NOSCRIPT recovery, and that every key they write expires. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop/loop.h"
#include "core/error.h"
#include "redis/policy.h"
#include "redis/redis.h"
#include "support/policy_redis.h"
#include "support/redis_server.h"

static struct event_base *base;
static struct redis_ctx *r;
static pid_t server;
static int port, up;

/* The last reply, flattened: element strings (integers printed). */
static char got[16][256];
static int ngot, replies;

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    ngot = 0;
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements && i < 16; i++) {
            redisReply *e = rep->element[i];
            if (e->type == REDIS_REPLY_INTEGER)
                snprintf(got[ngot++], 256, "%lld", e->integer);
            else
                snprintf(got[ngot++], 256, "%.*s", (int)e->len, e->str ? e->str : "");
        }
    } else if (rep && rep->type == REDIS_REPLY_INTEGER) {
        snprintf(got[ngot++], 256, "%lld", rep->integer);
    } else if (rep && rep->type == REDIS_REPLY_ERROR) {
        snprintf(got[ngot++], 256, "ERR:%s", rep->str);
    } else if (rep) {
        snprintf(got[ngot++], 256, "%.*s", (int)rep->len, rep->str ? rep->str : "");
    }
    replies++;
}

static void eval(enum policy_script s, int nkeys, const char *const *keys, int nargs,
                 const char *const *args)
{
    int want = replies + 1;
    const char *argv[64];
    assert_true(3 + nkeys + nargs <= 64);
    memcpy(argv + 3, keys, (size_t)nkeys * sizeof(*keys));
    memcpy(argv + 3 + nkeys, args, (size_t)nargs * sizeof(*args));
    if (3 + nkeys + nargs <= 16)
        assert_int_equal(policy_eval(r, s, nkeys, keys, nargs, args, on_reply, NULL), CG_OK);
    else
        assert_int_equal(policy_eval_argv(r, s, nkeys, 3 + nkeys + nargs, argv, NULL, on_reply,
                                          NULL),
                         CG_OK);
    test_run_until(base, &replies, want, 3000);
    assert_int_equal(replies, want);
}

static void cmd(const char *a0, const char *a1, const char *a2, const char *a3)
{
    const char *argv[] = {a0, a1, a2, a3};
    int argc = a3 ? 4 : a2 ? 3 : a1 ? 2 : 1;
    int want = replies + 1;
    assert_int_equal(redis_command_argv(r, on_reply, NULL, argc, argv, NULL), CG_OK);
    test_run_until(base, &replies, want, 3000);
}

static int setup(void **state)
{
    port = test_free_port();
    server = test_redis_start(port, NULL);
    base = event_base_new();
    loop_own_base(base); /* this test drives the base itself */
    r = test_policy_redis_open(base, port, &up);
    return 0;
}

static int teardown(void **state)
{
    redis_free(&r);
    event_base_free(base);
    test_redis_stop(server);
    return 0;
}

static int flush(void **state)
{
    cmd("FLUSHALL", NULL, NULL, NULL);
    return 0;
}

/* Asserts every key in Redis has a TTL. */
static void assert_all_keys_expire(void)
{
    cmd("KEYS", "*", NULL, NULL);
    int n = ngot;
    char keys[8][256];
    memcpy(keys, got, sizeof(keys));
    assert_true(n > 0);
    for (int i = 0; i < n; i++) {
        cmd("PTTL", keys[i], NULL, NULL);
        if (atoll(got[0]) <= 0)
            fail_msg("key %s has no expiry (PTTL %s)", keys[i], got[0]);
    }
}

#define OPT "cg:{+14155550100}:optout"
#define WA "cg:{+14155550100}:wa"

static void test_send_plain_ok_and_optout(void **state)
{
    const char *keys[] = {OPT, WA};
    const char *args[] = {"1", "0", "86400000", "86400", "fp"};
    eval(POLICY_SEND, 2, keys, 5, args);
    assert_string_equal(got[0], "ok");

    cmd("SET", OPT, "1", NULL);
    eval(POLICY_SEND, 2, keys, 5, args);
    assert_string_equal(got[0], "opted_out");
    /* A call does not check opt-outs. */
    const char *call_args[] = {"0", "0", "86400000", "86400", "fp"};
    eval(POLICY_SEND, 2, keys, 5, call_args);
    assert_string_equal(got[0], "ok");
}

static void test_send_whatsapp_window(void **state)
{
    char ms[32];
    const char *keys[] = {OPT, WA};
    const char *args[] = {"0", "1", "60000", "86400", "fp"};

    eval(POLICY_SEND, 2, keys, 5, args);
    assert_string_equal(got[0], "window_closed");
    assert_string_equal(got[1], "0"); /* never opened */

    /* Opened 10 s ago, 60 s window: open. */
    cmd("TIME", NULL, NULL, NULL);
    long long now = atoll(got[0]) * 1000 + atoll(got[1]) / 1000;
    snprintf(ms, sizeof(ms), "%lld", now - 10000);
    cmd("SET", WA, ms, NULL);
    eval(POLICY_SEND, 2, keys, 5, args);
    assert_string_equal(got[0], "ok");

    /* Opened 70 s ago: closed 10 s ago, and it says when. */
    snprintf(ms, sizeof(ms), "%lld", now - 70000);
    cmd("SET", WA, ms, NULL);
    eval(POLICY_SEND, 2, keys, 5, args);
    assert_string_equal(got[0], "window_closed");
    long long closed = atoll(got[1]);
    assert_true(closed == now - 10000);
}

/* account.lua take: rate (10/s), most in flight, then n released leases,
 * then per request id, cost, lease ms, longest wait ms. */
#define TAKE(...) \
    eval(POLICY_ACCOUNT, 2, akeys, sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *), \
         (const char *[]){__VA_ARGS__})
static const char *const akeys[] = {"cg:{account}:tat_us", "cg:{account}:leases"};

/* Each take answers three elements: what, ms, slot. W(i, k): element k of
 * the i-th request's answer. */
#define W(i, k) got[3 * (i) + (k)]

static void test_account_rate_spacing(void **state)
{
    /* 10 segments/s: the first send goes now, the next slot is ~100 ms on. */
    TAKE("10", "100", "take", "0", "l1", "1", "30000", "0");
    assert_string_equal(W(0, 0), "ok");
    assert_string_equal(W(0, 1), "0");
    /* Not allowed to wait: refused with the wait, and nothing is taken. */
    TAKE("10", "100", "take", "0", "l2", "1", "30000", "0");
    assert_string_equal(W(0, 0), "rate");
    long wait = atol(W(0, 1));
    assert_true(wait > 50 && wait <= 100);
    assert_string_equal(W(0, 2), "0");
    /* Allowed to wait: one batch reserves consecutive slots, 100 ms apart. */
    TAKE("10", "100", "take", "0", "l2", "1", "30000", "1000", "l3", "1", "30000", "1000");
    assert_int_equal(ngot, 6);
    assert_string_equal(W(0, 0), "ok");
    assert_string_equal(W(1, 0), "ok");
    long d2 = atol(W(0, 1)), d3 = atol(W(1, 1));
    assert_true(d2 > 50 && d2 <= 100);
    assert_true(d3 - d2 >= 99 && d3 - d2 <= 101);
    /* A 3-segment message takes three slots: the next is 300 ms after it. */
    TAKE("10", "100", "take", "0", "l4", "3", "30000", "5000", "l5", "1", "30000", "5000");
    long d4 = atol(W(0, 1)), d5 = atol(W(1, 1));
    char slot4[256], slot5[256];
    snprintf(slot4, sizeof(slot4), "%s", W(0, 2));
    snprintf(slot5, sizeof(slot5), "%s", W(1, 2));
    assert_true(d5 - d4 >= 299 && d5 - d4 <= 301);
    /* Giving back the 3-segment send, which l5 is booked after, frees no
     * slot: moving the next free slot back would put two sends in l5's. */
    const char *give4[] = {"10", "100", "give", "l4", "3", slot4};
    eval(POLICY_ACCOUNT, 2, akeys, 6, give4);
    assert_string_equal(got[0], "ok");
    TAKE("10", "100", "take", "0", "l6", "1", "30000", "5000");
    long d6 = atol(W(0, 1));
    /* d5 + 100, less the time between the two calls (a loaded machine). */
    assert_true(d6 >= d5 + 50 && d6 <= d5 + 100);
    char slot6[256];
    snprintf(slot6, sizeof(slot6), "%s", W(0, 2));
    /* Giving back the last one booked (l6) frees its slot for the next. */
    const char *give6[] = {"10", "100", "give", "l6", "1", slot6};
    eval(POLICY_ACCOUNT, 2, akeys, 6, give6);
    TAKE("10", "100", "take", "0", "l7", "1", "30000", "5000");
    assert_true(atol(W(0, 1)) <= d6);
    /* Sub-second slots: at 1,000/s one batch goes out 1 ms apart. */
    cmd("FLUSHALL", NULL, NULL, NULL);
    TAKE("1000", "100", "take", "0", "a", "1", "30000", "5000", "b", "1", "30000", "5000", "c",
         "1", "30000", "5000", "d", "1", "30000", "5000");
    assert_string_equal(W(0, 1), "0");
    assert_string_equal(W(1, 1), "1");
    assert_string_equal(W(2, 1), "2");
    assert_string_equal(W(3, 1), "3");
    assert_all_keys_expire();
}

static void test_account_concurrency(void **state)
{
    /* cost 0: no rate limit, only the three places in flight. */
    TAKE("10", "3", "take", "0", "l0", "0", "30000", "0", "l1", "0", "30000", "0", "l2", "0",
         "30000", "0", "l3", "0", "30000", "0");
    assert_int_equal(ngot, 12);
    assert_string_equal(W(0, 0), "ok");
    assert_string_equal(W(1, 0), "ok");
    assert_string_equal(W(2, 0), "ok");
    assert_string_equal(W(3, 0), "concurrency");
    assert_true(atol(W(3, 1)) >= 1 && atol(W(3, 1)) <= 20);
    /* A released lease (listed before the takes) frees its place. */
    TAKE("10", "3", "take", "1", "l1", "l3", "0", "30000", "0");
    assert_string_equal(W(0, 0), "ok");
    TAKE("10", "3", "take", "0", "l4", "0", "30000", "0");
    assert_string_equal(W(0, 0), "concurrency");
    /* So does one given back. */
    const char *give[] = {"10", "3", "give", "l0", "0", "0"};
    eval(POLICY_ACCOUNT, 2, akeys, 6, give);
    TAKE("10", "3", "take", "0", "l4", "0", "30000", "0");
    assert_string_equal(W(0, 0), "ok");
    /* Leases of a crashed replica expire on their own. */
    cmd("FLUSHALL", NULL, NULL, NULL);
    TAKE("10", "3", "take", "0", "s0", "0", "100", "0", "s1", "0", "100", "0", "s2", "0", "100",
         "0");
    usleep(150 * 1000);
    TAKE("10", "3", "take", "0", "s3", "0", "30000", "0");
    assert_string_equal(W(0, 0), "ok");
    assert_all_keys_expire();
}

static void test_verify_start_limits(void **state)
{
    const char *keys[] = {"cg:{+14155550100}:vsend"};
    char id[16];
    /* 3 per 2 s, no cool-down. */
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "v%d", i);
        const char *a[] = {"3", "2000", "0", id};
        eval(POLICY_VERIFY_START, 1, keys, 4, a);
        assert_string_equal(got[0], "ok");
    }
    const char *a[] = {"3", "2000", "0", "v3"};
    eval(POLICY_VERIFY_START, 1, keys, 4, a);
    assert_string_equal(got[0], "wait");
    assert_string_equal(got[2], "limit");
    long wait = atol(got[1]);
    assert_true(wait > 1500 && wait <= 2000);
    /* A failed send gives its place back. */
    cmd("ZREM", keys[0], "v2", NULL);
    eval(POLICY_VERIFY_START, 1, keys, 4, a);
    assert_string_equal(got[0], "ok");
    assert_all_keys_expire();
}

static void test_verify_start_cooldown(void **state)
{
    const char *keys[] = {"cg:{+14155550100}:vsend"};
    const char *a1[] = {"3", "600000", "500", "c1"};
    const char *a2[] = {"3", "600000", "500", "c2"};
    eval(POLICY_VERIFY_START, 1, keys, 4, a1);
    assert_string_equal(got[0], "ok");
    eval(POLICY_VERIFY_START, 1, keys, 4, a2);
    assert_string_equal(got[0], "wait");
    assert_string_equal(got[2], "cooldown");
    usleep(520 * 1000);
    eval(POLICY_VERIFY_START, 1, keys, 4, a2);
    assert_string_equal(got[0], "ok");
}

static void test_verify_check_limit(void **state)
{
    const char *keys[] = {"cg:{+14155550100}:vcheck"};
    char id[16];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "k%d", i);
        const char *a[] = {"5", "600000", id};
        eval(POLICY_VERIFY_CHECK, 1, keys, 3, a);
        assert_string_equal(got[0], "ok");
    }
    const char *a[] = {"5", "600000", "k5"};
    eval(POLICY_VERIFY_CHECK, 1, keys, 3, a);
    assert_string_equal(got[0], "wait");
    assert_true(atol(got[1]) > 590000);
    assert_all_keys_expire();
}

static void test_noscript_is_recognised_and_reload_works(void **state)
{
    const char *keys[] = {OPT, WA};
    const char *args[] = {"1", "0", "86400000", "86400", "fp"};
    cmd("SCRIPT", "FLUSH", NULL, NULL);
    eval(POLICY_SEND, 2, keys, 5, args);
    assert_true(strncmp(got[0], "ERR:NOSCRIPT", 12) == 0);
    policy_reload(r);
    eval(POLICY_SEND, 2, keys, 5, args);
    assert_string_equal(got[0], "ok");
}

static void test_sha_is_stable_hex(void **state)
{
    for (int s = 0; s < POLICY_SCRIPT_COUNT; s++) {
        const char *sha = policy_sha(s);
        assert_int_equal(strlen(sha), 40);
        assert_int_equal(strspn(sha, "0123456789abcdef"), 40);
    }
    assert_string_not_equal(policy_sha(POLICY_SEND), policy_sha(POLICY_ACCOUNT));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_send_plain_ok_and_optout, flush),
        cmocka_unit_test_setup(test_send_whatsapp_window, flush),
        cmocka_unit_test_setup(test_account_rate_spacing, flush),
        cmocka_unit_test_setup(test_account_concurrency, flush),
        cmocka_unit_test_setup(test_verify_start_limits, flush),
        cmocka_unit_test_setup(test_verify_start_cooldown, flush),
        cmocka_unit_test_setup(test_verify_check_limit, flush),
        cmocka_unit_test_setup(test_noscript_is_recognised_and_reload_works, flush),
        cmocka_unit_test(test_sha_is_stable_hex),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
