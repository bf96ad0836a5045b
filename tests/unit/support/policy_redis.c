/* See policy_redis.h. */
#include "policy_redis.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "redis/policy.h"
#include "redis/redis.h"
#include "redis_server.h"

static void on_health(int up, void *data)
{
    *(int *)data = up;
}

struct redis_ctx *test_policy_redis_open(struct event_base *base, int port, int *up)
{
    static struct config_redis cr = {.host = "127.0.0.1"};
    struct redis_ctx *r;
    cr.port = port;
    struct redis_opts o = {.server = &cr, .ping_interval_ms = 100, .timeout_ms = 1000,
                           .on_health = on_health, .health_data = up,
                           .on_connect = policy_load};
    assert_int_equal(policy_init(), CG_OK);
    assert_int_equal(redis_new(base, &o, &r), CG_OK);
    assert_int_equal(redis_start(r), CG_OK);
    test_run_until(base, up, 1, 5000);
    assert_int_equal(*up, 1);
    return r;
}

static void on_decision(struct policy_result *res, struct policy_req *req)
{
    struct test_decision *d = req->data;
    d->res = *res;
    res->repeat = NULL; /* kept for the test */
    d->done = 1;
}

struct policy_req *test_decision_arm(struct test_decision *d)
{
    free(d->res.repeat);
    memset(d, 0, sizeof(*d));
    d->req.done = on_decision;
    d->req.data = d;
    return &d->req;
}

void test_decision_wait(struct event_base *base, struct test_decision *d)
{
    test_run_until(base, &d->done, 1, 3000);
    assert_int_equal(d->done, 1);
}
