/* resolve_queue.c against a real redis-server: entries due now or later,
 * taken with a lease (and so taken again once it ends), kept or moved by
 * add, removed by done, in the order made, one script call per loop turn;
 * the queue key expires. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "redis/keys.h"
#include "redis/resolve_queue.h"
#include "support/policy_redis.h"
#include "support/redis_server.h"

static struct test_redis rs;
static struct config cfg;
static struct resolve_queue *q;
static char taken[8][64];
static int ntaken, takes;

static const char *cmd(const char *a0, const char *a1, const char *a2, const char *a3)
{
    return test_redis_cmd(&rs, a0, a1, a2, a3);
}

static int setup(void **state)
{
    cfg.idempotency_ttl_s = 3600;
    test_redis_open(&rs, NULL);
    assert_int_equal(resolve_queue_new(rs.base, rs.r, &cfg, &q), 0);
    return 0;
}

static int teardown(void **state)
{
    resolve_queue_free(&q);
    test_redis_close(&rs);
    return 0;
}

static int flush(void **state)
{
    cmd("FLUSHALL", NULL, NULL, NULL);
    return 0;
}

static void on_taken(const char *const *keys, int n, void *data)
{
    ntaken = n;
    for (int i = 0; i < n && i < 8; i++)
        snprintf(taken[i], sizeof(taken[i]), "%s", keys[i]);
    takes++;
}

static int take(int max, long lease_ms)
{
    int before = takes;
    assert_int_equal(resolve_queue_take(q, max, lease_ms, on_taken, NULL), 0);
    test_run_until(rs.base, &takes, before + 1, 3000);
    assert_int_equal(takes, before + 1);
    return ntaken;
}

static void test_due_entries_are_taken_with_a_lease(void **state)
{
    resolve_queue_add(q, "k1", 0, 0);
    resolve_queue_add(q, "k2", 0, 0);
    resolve_queue_add(q, "later", 60000, 0);
    assert_int_equal(take(1, 200), 1); /* at most max; the batch went first */
    assert_true(atoll(cmd("TTL", KEYS_RESOLVE_QUEUE, NULL, NULL)) > 3000);
    assert_int_equal(take(8, 200), 1);
    assert_int_equal(take(8, 200), 0); /* both leased, the third not due */
    usleep(250 * 1000);
    /* Whoever took them stopped: they come back. */
    assert_int_equal(take(8, 60000), 2);
    resolve_queue_done(q, "k1");
    event_base_loop(rs.base, EVLOOP_NONBLOCK); /* the end of this loop turn */
    assert_string_equal(cmd("ZCARD", KEYS_RESOLVE_QUEUE, NULL, NULL), "2");
}

/* Nothing reaches Redis until the loop turn ends; then every change, in
 * the order made, over as many script calls as it takes. */
static void test_one_call_per_turn_in_order(void **state)
{
    for (int i = 0; i < 300; i++) { /* more than one script call holds (256 each) */
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        resolve_queue_add(q, k, 60000, 0);
        if (i % 2)
            resolve_queue_done(q, k); /* after its add, in the same batch */
    }
    assert_string_equal(cmd("EXISTS", KEYS_RESOLVE_QUEUE, NULL, NULL), "0");
    event_base_loop(rs.base, EVLOOP_NONBLOCK);
    assert_string_equal(cmd("ZCARD", KEYS_RESOLVE_QUEUE, NULL, NULL), "150");
    assert_string_equal(cmd("ZSCORE", KEYS_RESOLVE_QUEUE, "k1", NULL), "");
    assert_string_not_equal(cmd("ZSCORE", KEYS_RESOLVE_QUEUE, "k298", NULL), "");
}

static void test_keep_earlier_or_move(void **state)
{
    resolve_queue_add(q, "k", 60000, 0);
    resolve_queue_add(q, "k", 0, 1); /* kept as it was */
    assert_int_equal(take(8, 1000), 0);
    resolve_queue_add(q, "k", 0, 0); /* moved: due now */
    assert_int_equal(take(8, 1000), 1);
    assert_string_equal(taken[0], "k");
    /* A key not queued at all is added by keep_earlier. */
    resolve_queue_add(q, "new", 0, 1);
    assert_int_equal(take(8, 1000), 1);
    assert_string_equal(taken[0], "new");
}

#define T(fn) cmocka_unit_test_setup(fn, flush)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_due_entries_are_taken_with_a_lease),
        T(test_keep_earlier_or_move),
        T(test_one_call_per_turn_in_order),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
