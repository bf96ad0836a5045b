/* handlers.c: what each webhook changes (and the key a keyed send's callback
 * resolves), against a real redis-server and the
 * real record modules; only the HTTP side (webhook_param, webhook_reply,
 * webhook_metrics, webhook_not_applied_log of server.c) is faked here, so
 * each test sees the code Twilio would get and reads Redis to see what was
 * applied. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "core/config.h"
#include "core/log.h"
#include "loop/loop.h"
#include "redis/idempotency.h"
#include "redis/policy.h"
#include "redis/redis.h"
#include "support/policy_redis.h"
#include "support/redis_server.h"
#include "webhook/server.h"

/* --- the fake HTTP side --- */

static struct webhook_metrics metrics;
static int replied, reply_status;
static char reply_type[32];

const char *webhook_param_len(const struct webhook_req *w, const char *name, size_t *len)
{
    for (size_t i = 0; i < w->nparams; i++) {
        if (strcmp(w->params[i].name, name) == 0) {
            if (len)
                *len = w->params[i].vlen;
            return w->params[i].value;
        }
    }
    if (len)
        *len = 0;
    return NULL;
}

const char *webhook_param(const struct webhook_req *w, const char *name)
{
    return webhook_param_len(w, name, NULL);
}

void webhook_reply(struct webhook_req *w, int status, const char *content_type, const char *body)
{
    replied++;
    reply_status = status;
    snprintf(reply_type, sizeof(reply_type), "%s", content_type);
}

struct webhook_metrics *webhook_metrics(struct webhook_ctx *w)
{
    return &metrics;
}

struct log_limit *webhook_not_applied_log(struct webhook_ctx *w)
{
    static struct log_limit limit;
    return &limit;
}

/* --- a real Redis --- */

static struct test_redis rs;
static struct config cfg;
static struct app app;

static const char *cmd(const char *a0, const char *a1, const char *a2)
{
    return test_redis_cmd(&rs, a0, a1, a2, NULL);
}

static int setup(void **state)
{
    /* A loop that never starts: this test drives its base itself. */
    app.nworkers = 1;
    assert_int_equal(loop_new(&app.workers[0].loop), 0);
    test_redis_open(&rs, loop_base(app.workers[0].loop));
    cfg.optout_ttl_days = 365;
    cfg.events_maxlen = 1000;
    app.cfg = &cfg;
    app.workers[0].redis = rs.r;
    assert_int_equal(idempotency_new(rs.r, &cfg, &app.workers[0].idem), 0);
    return 0;
}

static int teardown(void **state)
{
    test_redis_close(&rs);
    idempotency_free(&app.workers[0].idem);
    loop_free(&app.workers[0].loop);
    return 0;
}

static int flush(void **state)
{
    cmd("FLUSHALL", NULL, NULL);
    memset(&metrics, 0, sizeof(metrics));
    return 0;
}

static const char *query; /* the next hook's URL query */

/* One webhook with `n` name/value pairs, run until it is answered. */
static int hook(void (*handler)(struct webhook_req *), const char *route,
                const char *const *kv, size_t n)
{
    struct webhook_req *w = calloc(1, sizeof(*w));
    w->app = &app;
    w->route = route;
    w->query = query;
    for (size_t i = 0; i < n; i++) {
        w->params[i].name = kv[2 * i];
        w->params[i].nlen = strlen(kv[2 * i]);
        w->params[i].value = kv[2 * i + 1];
        w->params[i].vlen = strlen(kv[2 * i + 1]);
    }
    w->nparams = n;
    replied = 0;
    handler(w);
    test_run_until(rs.base, &replied, 1, 3000);
    assert_int_equal(replied, 1);
    free(w);
    return reply_status;
}

#define SID "SM0123456789abcdef0123456789abcdef"
#define N(kv) (sizeof(kv) / sizeof(kv[0]) / 2)

static int status(const char *s)
{
    const char *kv[] = {"MessageSid", SID, "MessageStatus", s, "To", "+14155550100"};
    return hook(handlers_message_status, "messages_status", kv, N(kv));
}

static long long stream_len(void)
{
    return atoll(cmd("XLEN", "cg:events", NULL));
}

static void test_status_applied_once_and_never_backwards(void **state)
{
    assert_int_equal(status("sent"), 200);
    assert_string_equal(cmd("HGET", "cg:{" SID "}:msg", "status"), "sent");
    assert_int_equal(stream_len(), 1);
    assert_int_equal(status("sent"), 200); /* Twilio's retry: a duplicate */
    assert_int_equal(stream_len(), 1);
    assert_int_equal(status("delivered"), 200);
    assert_int_equal(status("queued"), 200); /* late: recorded, not applied */
    assert_string_equal(cmd("HGET", "cg:{" SID "}:msg", "status"), "delivered");
    assert_int_equal(stream_len(), 3);
    assert_int_equal(metrics.statuses[message_status_index("delivered")], 1);
    assert_true(atoll(cmd("TTL", "cg:{" SID "}:msg", NULL)) > 0);
    assert_true(atoll(cmd("TTL", "cg:{" SID "}:ev:sent", NULL)) > 0);
}

/* A keyed send's callback names its idempotency record (?cg=): its first
 * status resolves an unknown outcome. Only an idempotency record is ever
 * touched, and only one that exists. */
static void test_status_callback_resolves_its_key(void **state)
{
    const char *rec = "cg:{key:billing:o-1}:idem";
    test_redis_cmd(&rs, "HSET", rec, "state", "unknown");
    query = "cg=cg%3A%7Bkey%3Abilling%3Ao-1%7D%3Aidem";
    assert_int_equal(status("sent"), 200);
    assert_string_equal(cmd("HGET", rec, "state"), "found");
    assert_string_equal(cmd("HGET", rec, "sid"), SID);
    /* Another key's name, or none that exists: nothing written. */
    test_redis_cmd(&rs, "SET", "cg:{+1}:optout", "1", NULL);
    query = "cg=cg%3A%7B%2B1%7D%3Aoptout";
    assert_int_equal(status("delivered"), 200);
    assert_string_equal(cmd("TYPE", "cg:{+1}:optout", NULL), "string");
    query = "cg=cg%3A%7Bkey%3Abilling%3Agone%7D%3Aidem";
    assert_int_equal(status("undelivered"), 200);
    assert_string_equal(cmd("EXISTS", "cg:{key:billing:gone}:idem", NULL), "0");
    query = NULL;
}

static void test_status_malformed(void **state)
{
    assert_int_equal(status("bogus"), 400);
    const char *kv[] = {"MessageSid", "SMnothex", "MessageStatus", "sent"};
    assert_int_equal(hook(handlers_message_status, "messages_status", kv, N(kv)), 400);
    assert_int_equal(stream_len(), 0);
}

static void test_inbound_stop_then_start(void **state)
{
    const char *stop[] = {"MessageSid", "SM1", "From", "+14155550100", "Body", "  stop "};
    assert_int_equal(hook(handlers_inbound, "messages_inbound", stop, N(stop)), 200);
    assert_string_equal(reply_type, "text/xml");
    assert_string_equal(cmd("EXISTS", "cg:{+14155550100}:optout", NULL), "1");
    assert_true(atoll(cmd("TTL", "cg:{+14155550100}:optout", NULL)) > 86400 * 364);
    assert_int_equal(metrics.optouts, 1);
    /* The same message again: applied once. */
    assert_int_equal(hook(handlers_inbound, "messages_inbound", stop, N(stop)), 200);
    assert_int_equal(metrics.optouts, 1);
    const char *start[] = {"MessageSid", "SM2", "From", "+14155550100", "Body", "START"};
    assert_int_equal(hook(handlers_inbound, "messages_inbound", start, N(start)), 200);
    assert_string_equal(cmd("EXISTS", "cg:{+14155550100}:optout", NULL), "0");
    assert_int_equal(metrics.optins, 1);
    assert_int_equal(stream_len(), 2);
}

static void test_inbound_whatsapp_opens_the_window_and_stop_is_metas(void **state)
{
    const char *kv[] = {"MessageSid", "SM3", "From", "whatsapp:+14155550101", "Body", "STOP"};
    assert_int_equal(hook(handlers_inbound, "messages_inbound", kv, N(kv)), 200);
    assert_true(atoll(cmd("GET", "cg:{+14155550101}:wa", NULL)) > 0);
    assert_string_equal(cmd("EXISTS", "cg:{+14155550101}:optout", NULL), "0");
    assert_int_equal(metrics.optouts, 0);
}

static void test_inbound_opt_out_type_wins(void **state)
{
    const char *kv[] = {"MessageSid", "SM4", "From", "+14155550102", "Body", "please stop",
                        "OptOutType", "STOP"};
    assert_int_equal(hook(handlers_inbound, "messages_inbound", kv, N(kv)), 200);
    assert_string_equal(cmd("EXISTS", "cg:{+14155550102}:optout", NULL), "1");
}

static void test_inbound_malformed(void **state)
{
    const char *kv[] = {"MessageSid", "SM5", "From", "+1415abc"};
    assert_int_equal(hook(handlers_inbound, "messages_inbound", kv, N(kv)), 400);
    const char *none[] = {"From", "+14155550100"};
    assert_int_equal(hook(handlers_inbound, "messages_inbound", none, N(none)), 400);
}

static void test_call_status_once(void **state)
{
    const char *kv[] = {"CallSid", "CA0123456789abcdef0123456789abcdef", "CallStatus",
                        "completed", "CallDuration", "7"};
    assert_int_equal(hook(handlers_call_status, "calls_status", kv, N(kv)), 200);
    assert_int_equal(hook(handlers_call_status, "calls_status", kv, N(kv)), 200);
    assert_int_equal(stream_len(), 1);
}

static void test_redis_down_is_503_for_each_route(void **state)
{
    test_redis_stop(rs.pid);
    test_run_until(rs.base, &rs.up, 0, 3000);
    assert_int_equal(status("sent"), 503);
    const char *kv[] = {"MessageSid", "SM6", "From", "+14155550100", "Body", "STOP"};
    assert_int_equal(hook(handlers_inbound, "messages_inbound", kv, N(kv)), 503);
    const char *call[] = {"CallSid", "CA0123456789abcdef0123456789abcdef", "CallStatus",
                          "completed"};
    assert_int_equal(hook(handlers_call_status, "calls_status", call, N(call)), 503);
    /* Back up: the same events apply. */
    rs.pid = test_redis_start(rs.port, NULL);
    test_run_until(rs.base, &rs.up, 1, 5000);
    assert_int_equal(rs.up, 1);
    assert_int_equal(status("sent"), 200);
    assert_int_equal(stream_len(), 1);
}

#define T(fn) cmocka_unit_test_setup(fn, flush)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_status_applied_once_and_never_backwards),
        T(test_status_callback_resolves_its_key),
        T(test_status_malformed),
        T(test_inbound_stop_then_start),
        T(test_inbound_whatsapp_opens_the_window_and_stop_is_metas),
        T(test_inbound_opt_out_type_wins),
        T(test_inbound_malformed),
        T(test_call_status_once),
        T(test_redis_down_is_503_for_each_route),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
