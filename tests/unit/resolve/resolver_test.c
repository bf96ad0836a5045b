/* resolver.c against a real redis-server, with Twilio faked here (twilio.c
 * is not linked): each test leaves an unsettled idempotency record in the
 * resolve queue, plays the pages Twilio's list would answer, and checks what
 * the record and the queue say afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/error.h"
#include "loop/loop.h"
#include "redis/idempotency.h"
#include "redis/keys.h"
#include "redis/resolve_queue.h"
#include "resolve/resolver.h"
#include "support/policy_redis.h"
#include "support/redis_server.h"
#include "twilio/twilio.h"

/* --- the fake Twilio --- */

static struct {
    int requests, cancels;
    enum twilio_api api;
    char form[2048];
    twilio_done_fn *done;
    void *data;
} fx;

int twilio_request(struct twilio_ctx *t, enum twilio_api api, const char *form, size_t form_len,
                   int64_t ms_left, twilio_done_fn *done, void *data, struct twilio_req **out)
{
    fx.requests++;
    fx.api = api;
    snprintf(fx.form, sizeof(fx.form), "%.*s", (int)form_len, form);
    fx.done = done;
    fx.data = data;
    *out = (struct twilio_req *)&fx;
    return 0;
}
void twilio_cancel(struct twilio_req *req) { fx.cancels++; }

/* --- driving it --- */

static struct test_redis rs;
static struct config cfg;
static struct idempotency_ctx *idem;
static struct resolver *res;
static struct resolve_queue *queue;
static char key[KEYS_MAX];

static const char *cmd(const char *a0, const char *a1, const char *a2, const char *a3)
{
    return test_redis_cmd(&rs, a0, a1, a2, a3);
}

static int setup(void **state)
{
    memset(&fx, 0, sizeof(fx));
    cfg.idempotency_ttl_s = 3600;
    cfg.resolve_catchup_s = 1;
    cfg.resolve_interval_ms = 50;
    snprintf(cfg.verify_service_sid, sizeof(cfg.verify_service_sid), "VA1");
    test_redis_open(&rs, NULL);
    loop_own_base(rs.base);
    assert_int_equal(idempotency_new(rs.r, &cfg, &idem), 0);
    assert_int_equal(resolve_queue_new(rs.base, rs.r, &cfg, &queue), 0);
    struct resolver_deps d = {.base = rs.base, .cfg = &cfg, .redis = rs.r, .idem = idem,
                              .queue = queue, .twilio = (struct twilio_ctx *)&fx};
    assert_int_equal(resolver_new(&d, &res), 0);
    assert_int_equal(idempotency_key(key, sizeof(key), "billing", "order-7"), 0);
    return 0;
}

static int teardown(void **state)
{
    resolver_free(&res);
    resolve_queue_free(&queue);
    test_redis_close(&rs); /* replies still due end the resolver's jobs */
    idempotency_free(&idem);
    return 0;
}

/* A keyed SMS claimed at now, for lease_ms; unknown unless still pending. */
static void claim(long lease_ms, int unknown)
{
    struct test_decision d = {0};
    struct idempotency_send send = {.api = "Messages",
                                    .form = "To=%2B1415&From=%2B1500&Body=hi",
                                    .form_len = 31};
    assert_int_equal(idempotency_claim(idem, key, "fp", "owner-a", lease_ms, &send,
                                       test_decision_arm(&d)),
                     0);
    test_decision_wait(rs.base, &d);
    assert_int_equal(d.res.verdict, POLICY_GO);
    if (unknown)
        idempotency_unknown(idem, key, "owner-a");
    resolve_queue_add(queue, key, 0, 0);
}

static void now_rfc2822(char *out, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* Twilio's answer to the read in flight: a page of messages. */
static void page(const char *sid, const char *body, const char *next)
{
    char date[64];
    now_rfc2822(date, sizeof(date));
    json_t *items = json_array();
    if (sid)
        json_array_append_new(items, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "sid", sid,
                                               "to", "+1415", "from", "+1500", "body", body,
                                               "status", "sent", "date_created", date));
    json_t *j = json_pack("{s:o, s:s?}", "messages", items, "next_page_uri", next);
    struct twilio_result r = {.outcome = TWILIO_OK, .message = "", .json = j,
                              .retry_after_ms = -1};
    fx.done(&r, fx.data);
    json_decref(j);
}

static void wait_requests(int n)
{
    test_run_until(rs.base, &fx.requests, n, 3000);
    assert_int_equal(fx.requests, n);
}

/* Runs the loop until the record's state is `want` ("" when gone). */
static void wait_state(const char *want)
{
    long long until = test_now_ms() + 3000;
    while (strcmp(cmd("HGET", key, "state", NULL), want) != 0 && test_now_ms() < until)
        event_base_loop(rs.base, EVLOOP_NONBLOCK);
    assert_string_equal(cmd("HGET", key, "state", NULL), want);
}

static long long due_in_ms(void)
{
    const char *score = cmd("ZSCORE", KEYS_RESOLVE_QUEUE, key, NULL);
    if (!*score)
        return -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return atoll(score) - ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void test_found_on_the_first_page(void **state)
{
    claim(60000, 1);
    assert_int_equal(resolver_start(res), 0);
    wait_requests(1);
    assert_int_equal(fx.api, TWILIO_API_MESSAGES_LIST);
    assert_string_equal(fx.form, "To=%2B1415&From=%2B1500&PageSize=100");
    page("SMaaaa", "other body", "/2010-04-01/Accounts/AC1/Messages.json?Page=1");
    wait_requests(2);
    assert_string_equal(fx.form, "/2010-04-01/Accounts/AC1/Messages.json?Page=1");
    page("SMbbbb", "hi", NULL);
    wait_state("found");
    assert_string_equal(cmd("HGET", key, "sid", NULL), "SMbbbb");
    /* GetMessage knows it, and nothing is left to do. */
    assert_string_equal(cmd("HGET", "cg:{SMbbbb}:msg", "status", NULL), "sent");
    test_run_until(rs.base, &fx.cancels, 1, 200);
    assert_int_equal(due_in_ms(), -1);
}

static void test_absent_only_after_the_catchup(void **state)
{
    claim(60000, 1);
    assert_int_equal(resolver_start(res), 0);
    wait_requests(1);
    page(NULL, NULL, NULL);
    /* Not listed, but Twilio's list may lag: looked at again, kept. */
    test_run_until(rs.base, &fx.cancels, 1, 300);
    assert_string_equal(cmd("HGET", key, "state", NULL), "unknown");
    long long due = due_in_ms();
    assert_true(due > 0 && due <= 1000);
    /* Every read finds nothing, until the catch-up time has passed. */
    long long t = test_now_ms(), until = t + 3000;
    int answered = 1;
    while (*cmd("HGET", key, "state", NULL) && test_now_ms() < until) {
        event_base_loop(rs.base, EVLOOP_NONBLOCK);
        if (fx.requests > answered) {
            answered = fx.requests;
            page(NULL, NULL, NULL);
        }
    }
    assert_string_equal(cmd("EXISTS", key, NULL, NULL), "0");
    assert_true(test_now_ms() - t >= 500); /* not before a second past the claim */
    assert_true(fx.requests >= 2);
    assert_int_equal(due_in_ms(), -1);
}

static void test_unreadable_list_is_never_absent(void **state)
{
    claim(60000, 1);
    assert_int_equal(resolver_start(res), 0);
    wait_requests(1);
    struct twilio_result r = {.outcome = TWILIO_FAILED, .message = "HTTP 503",
                              .retry_after_ms = -1};
    fx.done(&r, fx.data);
    test_run_until(rs.base, &fx.cancels, 1, 1500); /* past the catch-up */
    assert_string_equal(cmd("HGET", key, "state", NULL), "unknown");
    assert_true(due_in_ms() > 10000); /* read again later */
    assert_int_equal(fx.requests, 1);
}

static void test_live_owner_is_left_alone(void **state)
{
    claim(60000, 0); /* pending, its owner may still answer */
    assert_int_equal(resolver_start(res), 0);
    test_run_until(rs.base, &fx.requests, 1, 300);
    assert_int_equal(fx.requests, 0);
    long long due = due_in_ms();
    assert_true(due > 55000 && due <= 60000); /* due when its lease ends */
    assert_string_equal(cmd("HGET", key, "state", NULL), "pending");
}

static void test_settled_record_leaves_the_queue(void **state)
{
    claim(60000, 0);
    struct policy_outcome o = {.code = 0, .body = (uint8_t *)"\x0a", .body_len = 1};
    idempotency_settle(idem, key, &o);
    assert_int_equal(resolver_start(res), 0);
    test_run_until(rs.base, &fx.requests, 1, 300);
    assert_int_equal(fx.requests, 0);
    assert_int_equal(due_in_ms(), -1);
}

static void test_stopping_mid_read_cancels_it(void **state)
{
    claim(60000, 1);
    assert_int_equal(resolver_start(res), 0);
    wait_requests(1);
    resolver_free(&res);
    assert_int_equal(fx.cancels, 1);
    /* The entry stays leased to nobody: it falls due again for another. */
    assert_true(due_in_ms() > 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_found_on_the_first_page),
        T(test_absent_only_after_the_catchup),
        T(test_unreadable_list_is_never_absent),
        T(test_live_owner_is_left_alone),
        T(test_settled_record_leaves_the_queue),
        T(test_stopping_mid_read_cancels_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
