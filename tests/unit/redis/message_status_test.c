/* message_status.c: the status table, the first status of a send, and the
 * record GetMessage reads, against a real redis-server (callbacks are in
 * webhook/handlers_test.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "redis/message_status.h"
#include "support/policy_redis.h"
#include "support/redis_server.h"

static struct test_redis rs;

static struct {
    struct message_status_get_req req;
    int done, found;
    char status[32];
    unsigned error_code;
    long long updated_at_ms;
} got;

static void on_record(struct message_status_get_req *req, int found,
                      const struct message_status_record *rec)
{
    got.done = 1;
    got.found = found;
    if (rec) {
        snprintf(got.status, sizeof(got.status), "%s", rec->status);
        got.error_code = rec->error_code;
        got.updated_at_ms = rec->updated_at_ms;
    }
}

static int get(const char *sid)
{
    memset(&got, 0, sizeof(got));
    got.req.done = on_record;
    assert_int_equal(message_status_get(rs.r, sid, &got.req), 0);
    test_run_until(rs.base, &got.done, 1, 3000);
    assert_int_equal(got.done, 1);
    return got.found;
}

static int setup(void **state)
{
    test_redis_open(&rs, NULL);
    return 0;
}

static int teardown(void **state)
{
    test_redis_close(&rs);
    return 0;
}

static void test_table(void **state)
{
    static const char *const names[] = {"accepted", "scheduled", "queued", "sending", "sent",
                                        "receiving", "received", "delivered", "undelivered",
                                        "failed", "canceled", "partially_delivered", "read"};
    assert_int_equal(sizeof(names) / sizeof(names[0]), MESSAGE_STATUS_COUNT);
    for (int i = 0; i < MESSAGE_STATUS_COUNT; i++) {
        assert_int_equal(message_status_index(names[i]), i);
        assert_string_equal(message_status_name(i), names[i]);
    }
    assert_int_equal(message_status_index("bogus"), -1);
    assert_int_equal(message_status_index(NULL), -1);
    assert_null(message_status_name(MESSAGE_STATUS_COUNT));
    assert_int_equal(message_status_apply(rs.r, "SM1", "bogus", "", "k", NULL, NULL), CG_EINVAL);
}

static void test_first_status_then_read(void **state)
{
    assert_int_equal(get("SM0000000000000000000000000000000a"), 0);
    message_status_first(rs.r, "SM0000000000000000000000000000000a", "queued");
    assert_int_equal(get("SM0000000000000000000000000000000a"), 1);
    assert_string_equal(got.status, "queued");
    assert_int_equal(got.error_code, 0);
    assert_true(got.updated_at_ms > 1700000000000LL);
}

static void test_redis_down(void **state)
{
    test_redis_stop(rs.pid);
    test_run_until(rs.base, &rs.up, 0, 3000);
    memset(&got, 0, sizeof(got));
    got.req.done = on_record;
    assert_int_equal(message_status_get(rs.r, "SM0000000000000000000000000000000a", &got.req),
                     CG_EREDIS);
    assert_int_equal(got.done, 0); /* a start that fails never calls back */
    rs.pid = test_redis_start(rs.port, NULL);
    test_run_until(rs.base, &rs.up, 1, 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_first_status_then_read),
        cmocka_unit_test(test_redis_down),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
