/* account.c against a real redis-server: a loop turn's takes and releases
 * go out as one account.lua call, answered in order; big turns are split;
 * a lost script, a stopped server and freeing the context all answer every
 * take exactly once, and never from inside account_take. */
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
#include "redis/account.h"
#include "redis/policy.h"
#include "redis/redis.h"
#include "support/policy_redis.h"
#include "support/redis_server.h"

#define MANY 300 /* more than one call carries */

static struct event_base *base;
static struct redis_ctx *r;
static pid_t server;
static int port, up, replies;
static long long cmd_int;

struct take {
    struct account_req req;
    char id[16];
    int answered;
    enum account_result res;
    int64_t ms;
};

static struct take takes[MANY];
static int answered, in_take;

static void on_done(struct account_req *req, enum account_result res, int64_t ms)
{
    struct take *t = req->data;
    assert_false(in_take);
    t->answered++;
    t->res = res;
    t->ms = ms;
    answered++;
}

static void take(struct account_ctx *a, int i, int cost, int64_t max_wait)
{
    struct take *t = &takes[i];
    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof(t->id), "t%d", i);
    t->req = (struct account_req){.id = t->id, .cost = cost, .lease_ms = 30000,
                                  .max_wait_ms = max_wait, .done = on_done, .data = t};
    in_take = 1;
    account_take(a, &t->req);
    in_take = 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    cmd_int = -1;
    if (rep && rep->type == REDIS_REPLY_INTEGER)
        cmd_int = rep->integer;
    else if (rep && rep->type == REDIS_REPLY_STRING && privdata) {
        /* INFO commandstats: calls= of the line named privdata */
        const char *line = strstr(rep->str, (const char *)privdata);
        cmd_int = line ? atoll(strstr(line, "calls=") + 6) : 0;
    }
    replies++;
}

static long long cmd(const char *a0, const char *a1, const char *a2, void *privdata)
{
    const char *argv[] = {a0, a1, a2};
    int argc = a2 ? 3 : a1 ? 2 : 1;
    int want = replies + 1;
    assert_int_equal(redis_command_argv(r, on_reply, privdata, argc, argv, NULL), CG_OK);
    test_run_until(base, &replies, want, 3000);
    assert_int_equal(replies, want);
    return cmd_int;
}

static long long evalsha_calls(void)
{
    return cmd("INFO", "commandstats", NULL, "cmdstat_evalsha:");
}

static long long zrem_calls(void)
{
    return cmd("INFO", "commandstats", NULL, "cmdstat_zrem:");
}

static void run_until_answered(int want)
{
    test_run_until(base, &answered, want, 5000);
    assert_int_equal(answered, want);
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
    if (server)
        test_redis_stop(server);
    return 0;
}

static int fresh(void **state)
{
    cmd("FLUSHALL", NULL, NULL, NULL);
    cmd("CONFIG", "RESETSTAT", NULL, NULL);
    answered = 0;
    return 0;
}

static void test_one_call_per_turn_in_order(void **state)
{
    struct account_ctx *a;
    assert_int_equal(account_new(base, r, 1000, 100, &a), CG_OK);
    long long before = evalsha_calls();
    for (int i = 0; i < 20; i++)
        take(a, i, 1, 5000);
    run_until_answered(20);
    assert_int_equal(evalsha_calls() - before, 1);
    /* 1,000 segments/s: slots 1 ms apart, in the order taken. */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(takes[i].answered, 1);
        assert_int_equal(takes[i].res, ACCOUNT_OK);
        assert_int_equal(takes[i].ms, i);
    }
    account_free(&a);
    assert_null(a);
}

static void test_big_turn_is_split(void **state)
{
    struct account_ctx *a;
    assert_int_equal(account_new(base, r, 100000, 1000, &a), CG_OK);
    long long before = evalsha_calls();
    for (int i = 0; i < MANY; i++)
        take(a, i, 0, 0);
    run_until_answered(MANY);
    assert_int_equal(evalsha_calls() - before, 2);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(takes[i].res, ACCOUNT_OK);
    assert_int_equal(cmd("ZCARD", "cg:{account}:leases", NULL, NULL), MANY);
    account_free(&a);
}

static void test_releases_ride_with_takes(void **state)
{
    struct account_ctx *a;
    assert_int_equal(account_new(base, r, 10, 3, &a), CG_OK);
    for (int i = 0; i < 4; i++)
        take(a, i, 0, 0);
    run_until_answered(4);
    assert_int_equal(takes[2].res, ACCOUNT_OK);
    assert_int_equal(takes[3].res, ACCOUNT_BUSY);
    assert_true(takes[3].ms >= 1 && takes[3].ms <= 20);

    /* Two requests done and two new ones in the same turn: one call, and
     * the places freed count for the new ones. */
    long long before = evalsha_calls();
    account_release(a, "t0");
    account_release(a, "t1");
    take(a, 4, 0, 0);
    take(a, 5, 0, 0);
    run_until_answered(6);
    assert_int_equal(takes[4].res, ACCOUNT_OK);
    assert_int_equal(takes[5].res, ACCOUNT_OK);
    assert_int_equal(evalsha_calls() - before, 1);

    /* Releases with no take to carry them wait for one a moment (50 ms),
     * then go out as one ZREM. */
    long long zrem = zrem_calls();
    account_release(a, "t2");
    account_release(a, "t4");
    account_release(a, "t5");
    assert_int_equal(cmd("ZCARD", "cg:{account}:leases", NULL, NULL), 3);
    long long t0 = test_now_ms();
    while (cmd("ZCARD", "cg:{account}:leases", NULL, NULL) > 0 && test_now_ms() - t0 < 2000)
        usleep(5000);
    assert_int_equal(cmd("ZCARD", "cg:{account}:leases", NULL, NULL), 0);
    assert_true(test_now_ms() - t0 >= 40);
    assert_int_equal(zrem_calls() - zrem, 1);
    /* A take in the meantime carries them at once, in its own call. */
    take(a, 6, 0, 0);
    take(a, 7, 0, 0);
    take(a, 8, 0, 0);
    run_until_answered(9);
    long long ev = evalsha_calls();
    account_release(a, "t6");
    take(a, 9, 0, 0);
    run_until_answered(10);
    assert_int_equal(takes[9].res, ACCOUNT_OK);
    assert_int_equal(evalsha_calls() - ev, 1);
    assert_int_equal(cmd("ZCARD", "cg:{account}:leases", NULL, NULL), 3); /* t7, t8, t9 */
    account_free(&a);
}

static void test_rate_slot_beyond_wait_is_refused(void **state)
{
    struct account_ctx *a;
    assert_int_equal(account_new(base, r, 10, 100, &a), CG_OK);
    take(a, 0, 1, 0);
    take(a, 1, 1, 0);     /* its slot is 100 ms away: too far */
    take(a, 2, 1, 1000);  /* may wait: gets the slot after t0 */
    run_until_answered(3);
    assert_int_equal(takes[0].res, ACCOUNT_OK);
    assert_int_equal(takes[0].ms, 0);
    assert_int_equal(takes[1].res, ACCOUNT_RATE);
    assert_true(takes[1].ms >= 99 && takes[1].ms <= 100);
    assert_int_equal(takes[2].res, ACCOUNT_OK);
    assert_true(takes[2].ms >= 99 && takes[2].ms <= 100);
    /* t2, the last one booked, given back: its slot is free again. */
    assert_int_equal(account_give(a, "t2", 1, takes[2].req.slot), CG_OK);
    take(a, 3, 1, 1000);
    run_until_answered(4);
    assert_true(takes[3].ms <= 100);
    assert_int_equal(cmd("ZCARD", "cg:{account}:leases", NULL, NULL), 2); /* t0, t3 */
    /* t4 booked after t3; t3 given back: t4's slot stays its own. */
    take(a, 4, 1, 1000);
    run_until_answered(5);
    assert_int_equal(account_give(a, "t3", 1, takes[3].req.slot), CG_OK);
    take(a, 5, 1, 1000);
    run_until_answered(6);
    assert_string_not_equal(takes[5].req.slot, takes[4].req.slot);
    account_free(&a);
}

/* A slot given back behind later bookings is kept spare and handed to the
 * next take of its cost, so it is never lost (an idempotent repeat costs the
 * account nothing), and never shared. At 1 segment/s the slots are a second
 * apart, so a loaded machine cannot let one pass unseen. */
static void test_given_back_slot_is_reused_not_lost(void **state)
{
    struct account_ctx *a;
    assert_int_equal(account_new(base, r, 1, 100, &a), CG_OK);
    take(a, 0, 1, 10000); /* now */
    take(a, 1, 1, 10000); /* +1 s */
    take(a, 2, 1, 10000); /* +2 s */
    run_until_answered(3);
    assert_true(takes[1].ms > 900 && takes[1].ms <= 1000);
    assert_int_equal(account_give(a, "t1", 1, takes[1].req.slot), CG_OK);
    take(a, 3, 1, 10000);
    run_until_answered(4);
    assert_string_equal(takes[3].req.slot, takes[1].req.slot); /* t1's, again */
    assert_true(takes[3].ms < takes[2].ms);
    take(a, 4, 1, 10000);
    run_until_answered(5);
    assert_true(takes[4].ms > takes[2].ms + 900); /* after t2: no slot shared */
    account_free(&a);
}

static void test_noscript(void **state)
{
    struct account_ctx *a;
    assert_int_equal(account_new(base, r, 10, 100, &a), CG_OK);
    cmd("SCRIPT", "FLUSH", NULL, NULL);
    take(a, 0, 0, 0);
    take(a, 1, 0, 0);
    run_until_answered(2);
    assert_int_equal(takes[0].res, ACCOUNT_NOSCRIPT);
    assert_int_equal(takes[1].res, ACCOUNT_NOSCRIPT);
    policy_reload(r);
    take(a, 2, 0, 0);
    run_until_answered(3);
    assert_int_equal(takes[2].res, ACCOUNT_OK);
    account_free(&a);
}

static void test_free_answers_queued_takes(void **state)
{
    struct account_ctx *a;
    assert_int_equal(account_new(base, r, 10, 100, &a), CG_OK);
    take(a, 0, 0, 0);
    take(a, 1, 0, 0);
    assert_int_equal(answered, 0);
    account_free(&a);
    assert_null(a);
    assert_int_equal(answered, 2);
    assert_int_equal(takes[0].res, ACCOUNT_LOST);
    assert_int_equal(takes[1].answered, 1);
    /* What a done callback may still call with the context gone. */
    account_release(NULL, "t0");
    assert_int_equal(account_give(NULL, "t0", 0, "0"), CG_EREDIS);
}

/* Last: stops the server. Takes sent, or queued, while it is gone are each
 * answered once, ACCOUNT_LOST. */
static void test_redis_gone(void **state)
{
    struct account_ctx *a;
    assert_int_equal(account_new(base, r, 10, 100, &a), CG_OK);
    take(a, 0, 0, 0);
    test_redis_stop(server);
    server = 0;
    run_until_answered(1);
    assert_int_equal(takes[0].res, ACCOUNT_LOST);
    test_run_until(base, &up, 0, 5000);
    take(a, 1, 0, 0);
    account_release(a, "t0");
    run_until_answered(2);
    assert_int_equal(takes[1].res, ACCOUNT_LOST);
    assert_int_equal(account_give(a, "t1", 0, "0"), CG_EREDIS);
    account_free(&a);
    assert_int_equal(takes[0].answered + takes[1].answered, 2);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_one_call_per_turn_in_order, fresh),
        cmocka_unit_test_setup(test_big_turn_is_split, fresh),
        cmocka_unit_test_setup(test_releases_ride_with_takes, fresh),
        cmocka_unit_test_setup(test_rate_slot_beyond_wait_is_refused, fresh),
        cmocka_unit_test_setup(test_given_back_slot_is_reused_not_lost, fresh),
        cmocka_unit_test_setup(test_noscript, fresh),
        cmocka_unit_test_setup(test_free_answers_queued_takes, fresh),
        cmocka_unit_test_setup(test_redis_gone, fresh),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
