/* See policy_redis.h. */
#include "policy_redis.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "loop/loop.h"
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
    *up = 0; /* a fixture opened again must not see the last connection's health */
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

void test_redis_open(struct test_redis *t, struct event_base *base)
{
    t->port = test_free_port();
    t->pid = test_redis_start(t->port, NULL);
    t->own_base = base == NULL;
    t->base = base ? base : event_base_new();
    loop_own_base(t->base); /* this test drives the base itself */
    t->r = test_policy_redis_open(t->base, t->port, &t->up);
}

void test_redis_close(struct test_redis *t)
{
    redis_free(&t->r);
    if (t->own_base)
        event_base_free(t->base);
    test_redis_stop(t->pid);
}

static char cmd_reply[256];
static int cmd_replies;

static void on_cmd(redisAsyncContext *ac, void *reply, void *privdata)
{
    const redisReply *r = reply;
    cmd_reply[0] = '\0';
    if (r && r->type == REDIS_REPLY_INTEGER)
        snprintf(cmd_reply, sizeof(cmd_reply), "%lld", r->integer);
    else if (r && r->str)
        snprintf(cmd_reply, sizeof(cmd_reply), "%s", r->str);
    cmd_replies++;
}

const char *test_redis_cmd(struct test_redis *t, const char *a0, const char *a1, const char *a2,
                           const char *a3)
{
    const char *argv[] = {a0, a1, a2, a3};
    int argc = a3 ? 4 : a2 ? 3 : a1 ? 2 : 1;
    int want = cmd_replies + 1;
    assert_int_equal(redis_command_argv(t->r, on_cmd, NULL, argc, argv, NULL), CG_OK);
    test_run_until(t->base, &cmd_replies, want, 3000);
    assert_int_equal(cmd_replies, want);
    return cmd_reply;
}
