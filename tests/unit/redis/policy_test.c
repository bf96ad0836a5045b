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

#include "core/error.h"
#include "redis/policy.h"
#include "redis/redis.h"
#include "support/redis_server.h"

static struct event_base *base;
static struct redis_ctx *r;
static pid_t server;
static int port, up;

/* The last reply, flattened: element strings (integers printed). */
static char got[8][256];
static int ngot, replies;

static void on_health(int u, void *data)
{
    up = u;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    ngot = 0;
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements && i < 8; i++) {
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
    assert_int_equal(policy_eval(r, s, nkeys, keys, nargs, args, on_reply, NULL), CG_OK);
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
    assert_int_equal(policy_init(), CG_OK);
    port = test_free_port();
    server = test_redis_start(port, NULL);
    base = event_base_new();
    static struct config_redis cr = {.host = "127.0.0.1"};
    cr.port = port;
    struct redis_opts o = {.server = &cr, .ping_interval_ms = 100, .timeout_ms = 1000,
                           .on_health = on_health, .on_connect = policy_load};
    assert_int_equal(redis_new(base, &o, &r), CG_OK);
    assert_int_equal(redis_start(r), CG_OK);
    test_run_until(base, &up, 1, 5000);
    assert_int_equal(up, 1);
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
#define IDEM "cg:{+14155550100}:idem:sms:default:k1"

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

static void test_send_idempotency(void **state)
{
    const char *keys[] = {OPT, WA, IDEM};
    const char *args[] = {"1", "0", "86400000", "86400", "fp-A"};
    const char *other[] = {"1", "0", "86400000", "86400", "fp-B"};

    eval(POLICY_SEND, 3, keys, 5, args);
    assert_string_equal(got[0], "ok"); /* claimed */
    eval(POLICY_SEND, 3, keys, 5, args);
    assert_string_equal(got[0], "in_flight");
    eval(POLICY_SEND, 3, keys, 5, other);
    assert_string_equal(got[0], "mismatch");

    const char *done[] = {"HSET", IDEM, "state", "done", "code", "0", "body", "\x01\x02"};
    int want = replies + 1;
    assert_int_equal(redis_command_argv(r, on_reply, NULL, 8, done, NULL), CG_OK);
    test_run_until(base, &replies, want, 3000);
    eval(POLICY_SEND, 3, keys, 5, args);
    assert_string_equal(got[0], "repeat");
    assert_string_equal(got[1], "0");
    assert_string_equal(got[2], "\x01\x02");

    /* A repeat is answered even after an opt-out: it is the same message. */
    cmd("SET", OPT, "1", NULL);
    eval(POLICY_SEND, 3, keys, 5, args);
    assert_string_equal(got[0], "repeat");
    cmd("DEL", OPT, NULL, NULL);
    assert_all_keys_expire();
}

static void test_account_rate_spacing(void **state)
{
    const char *keys[] = {"cg:{account}:tat", "cg:{account}:leases"};
    /* 10 segments/s: a 1-segment send, then the next must wait ~100 ms. */
    const char *a1[] = {"1", "10", "100", "lease-1", "30000", "take"};
    const char *a2[] = {"1", "10", "100", "lease-2", "30000", "take"};
    eval(POLICY_ACCOUNT, 2, keys, 6, a1);
    assert_string_equal(got[0], "ok");
    eval(POLICY_ACCOUNT, 2, keys, 6, a2);
    assert_string_equal(got[0], "wait");
    long wait = atol(got[1]);
    assert_true(wait > 50 && wait <= 100);
    assert_string_equal(got[2], "rate");
    usleep((useconds_t)(wait + 5) * 1000);
    eval(POLICY_ACCOUNT, 2, keys, 6, a2);
    assert_string_equal(got[0], "ok");
    /* A 3-segment message pushes the next send 300 ms out. */
    usleep(110 * 1000);
    const char *a3[] = {"3", "10", "100", "lease-3", "30000", "take"};
    eval(POLICY_ACCOUNT, 2, keys, 6, a3);
    assert_string_equal(got[0], "ok");
    eval(POLICY_ACCOUNT, 2, keys, 6, a1);
    assert_string_equal(got[0], "wait");
    assert_true(atol(got[1]) > 250);
    /* Giving the 3-segment send back frees its place in the rate. */
    const char *give3[] = {"3", "10", "100", "lease-3", "30000", "give"};
    eval(POLICY_ACCOUNT, 2, keys, 6, give3);
    eval(POLICY_ACCOUNT, 2, keys, 6, a1);
    assert_string_equal(got[0], "ok");
    assert_all_keys_expire();
}

static void test_account_concurrency(void **state)
{
    const char *keys[] = {"cg:{account}:tat", "cg:{account}:leases"};
    char id[16];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "l%d", i);
        const char *a[] = {"0", "10", "3", id, "30000", "take"};
        eval(POLICY_ACCOUNT, 2, keys, 6, a);
        assert_string_equal(got[0], "ok"); /* cost 0: no rate limit, only leases */
    }
    const char *a4[] = {"0", "10", "3", "l3", "30000", "take"};
    eval(POLICY_ACCOUNT, 2, keys, 6, a4);
    assert_string_equal(got[0], "wait");
    assert_string_equal(got[2], "concurrency");
    /* Giving a lease back frees a place. */
    const char *give[] = {"0", "10", "3", "l1", "30000", "give"};
    eval(POLICY_ACCOUNT, 2, keys, 6, give);
    eval(POLICY_ACCOUNT, 2, keys, 6, a4);
    assert_string_equal(got[0], "ok");
    /* Leases of a crashed replica expire on their own. */
    cmd("FLUSHALL", NULL, NULL, NULL);
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        const char *a[] = {"0", "10", "3", id, "100", "take"};
        eval(POLICY_ACCOUNT, 2, keys, 6, a);
    }
    usleep(150 * 1000);
    eval(POLICY_ACCOUNT, 2, keys, 6, a4);
    assert_string_equal(got[0], "ok");
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
        cmocka_unit_test_setup(test_send_idempotency, flush),
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
