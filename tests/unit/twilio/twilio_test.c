/* twilio.c: what is retried and what never is, with http.c faked here (its
 * object is not linked): each test plays the HTTP results a request would
 * get, attempt by attempt, and checks the outcome and the attempts made. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <event2/event.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/error.h"
#include "loop/loop.h"
#include "twilio/http.h"
#include "twilio/twilio.h"

/* --- the fake HTTP client --- */

static struct {
    struct event_base *base;
    int starts, cancels;
    int connecting; /* the attempt in flight has not written its request yet */
    http_done_fn *done;
    void *data;
    struct http_request last;
    double started_ms[8];
    /* what the request ended with */
    int finished;
    enum twilio_outcome outcome;
    int code, attempts;
    long http_status;
    int64_t retry_after_ms;
    char sid[40];
} fx;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int http_new(struct event_base *base, const struct http_ctx_opts *opts, struct http_ctx **out)
{
    *out = (struct http_ctx *)&fx;
    return 0;
}

int http_start(struct http_ctx *ctx, const struct http_request *r, http_done_fn *done, void *data,
               struct http_req **out)
{
    if (fx.starts < 8)
        fx.started_ms[fx.starts] = now_ms();
    fx.starts++;
    fx.done = done;
    fx.data = data;
    fx.last = *r;
    if (out)
        *out = (struct http_req *)&fx;
    return 0;
}

void http_cancel(struct http_req *req) { fx.cancels++; }
int http_req_may_have_sent(const struct http_req *req) { return !fx.connecting; }
void http_free(struct http_ctx **ctx) { *ctx = NULL; }

/* --- driving it --- */

static const char *test_env(const char *name)
{
    if (strcmp(name, "TWILIO_ACCOUNT_SID") == 0)
        return "AC0123456789abcdef0123456789abcdef";
    if (strcmp(name, "TWILIO_AUTH_TOKEN") == 0)
        return "tok-not-a-real-one";
    return NULL;
}

static struct config cfg;
static struct twilio_ctx *tw;

static int setup(void **state)
{
    char err[256];
    memset(&fx, 0, sizeof(fx));
    if (config_load(&cfg, test_env, err, sizeof(err)))
        fail_msg("config: %s", err);
    fx.base = event_base_new();
    loop_own_base(fx.base);
    assert_int_equal(twilio_new(fx.base, &cfg, NULL, cfg.twilio_concurrency, &tw), 0);
    return 0;
}

static int teardown(void **state)
{
    twilio_free(&tw);
    event_base_free(fx.base);
    return 0;
}

static void on_done(const struct twilio_result *res, void *data)
{
    fx.finished++;
    fx.outcome = res->outcome;
    fx.code = res->code;
    fx.attempts = res->attempts;
    fx.http_status = res->http_status;
    fx.retry_after_ms = res->retry_after_ms;
    snprintf(fx.sid, sizeof(fx.sid), "%s", res->sid ? res->sid : "");
}

/* Starts a Messages request and runs the loop until its attempt starts. */
static void request(int64_t ms_left)
{
    assert_int_equal(twilio_request(tw, TWILIO_API_MESSAGES, "To=%2B1", 6, ms_left, on_done,
                                    NULL, NULL),
                     0);
    assert_int_equal(fx.starts, 0); /* the first attempt never starts inside the call */
    event_base_loop(fx.base, EVLOOP_ONCE);
    assert_int_equal(fx.starts, 1);
}

/* The attempt in flight gets this answer. */
static void answer(long status, const char *body, long retry_after_ms)
{
    struct http_result h = {.ok = 1,
                            .status = status,
                            .body = body,
                            .body_len = strlen(body),
                            .error = "",
                            .retry_after_ms = retry_after_ms};
    fx.done(&h, fx.data);
}

static void transport_failure(int maybe_sent)
{
    struct http_result h = {.body = "", .error = "Connection reset by peer",
                            .maybe_sent = maybe_sent, .retry_after_ms = -1};
    fx.done(&h, fx.data);
}

/* Runs the loop until the next attempt starts or the request ends. */
static void next_attempt(void)
{
    int starts = fx.starts;
    while (fx.starts == starts && !fx.finished)
        event_base_loop(fx.base, EVLOOP_ONCE);
}

static void test_ok_first_time(void **state)
{
    request(5000);
    assert_string_equal(fx.last.method, "POST");
    assert_non_null(strstr(fx.last.url, "/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"));
    assert_true(fx.last.timeout_ms <= 5000);
    answer(201, "{\"sid\": \"SM0123456789abcdef0123456789abcdef\", \"status\": \"queued\"}", -1);
    assert_int_equal(fx.finished, 1);
    assert_int_equal(fx.outcome, TWILIO_OK);
    assert_string_equal(fx.sid, "SM0123456789abcdef0123456789abcdef");
    assert_int_equal(fx.attempts, 1);
}

static void test_concurrency_429_retried_then_ok(void **state)
{
    request(5000);
    answer(429, "{\"code\": 20429, \"message\": \"Too Many Requests\"}", -1);
    assert_int_equal(fx.finished, 0);
    next_attempt();
    assert_int_equal(fx.starts, 2);
    answer(201, "{\"sid\": \"SM0123456789abcdef0123456789abcdef\"}", -1);
    assert_int_equal(fx.outcome, TWILIO_OK);
    assert_int_equal(fx.attempts, 2);
}

static void test_429_with_a_final_code_is_not_retried(void **state)
{
    request(5000);
    answer(429, "{\"code\": 60203, \"message\": \"Max send attempts reached\"}", -1);
    assert_int_equal(fx.finished, 1);
    assert_int_equal(fx.outcome, TWILIO_REFUSED);
    assert_int_equal(fx.code, 60203);
    assert_int_equal(fx.starts, 1);
}

static void test_refusal_is_final(void **state)
{
    request(5000);
    answer(400, "{\"code\": 21211, \"message\": \"Invalid 'To' Phone Number\"}", -1);
    assert_int_equal(fx.outcome, TWILIO_REFUSED);
    assert_int_equal(fx.code, 21211);
    assert_int_equal(fx.starts, 1);
}

static void test_5xx_is_unknown_and_never_retried(void **state)
{
    request(5000);
    answer(500, "{\"code\": 20500, \"message\": \"Internal Server Error\"}", -1);
    assert_int_equal(fx.outcome, TWILIO_UNKNOWN);
    assert_int_equal(fx.starts, 1);
}

static void test_failure_before_sending_is_retried(void **state)
{
    request(5000);
    transport_failure(0);
    next_attempt();
    assert_int_equal(fx.starts, 2);
    answer(201, "{\"sid\": \"SM0123456789abcdef0123456789abcdef\"}", -1);
    assert_int_equal(fx.outcome, TWILIO_OK);
}

static void test_failure_after_sending_is_unknown(void **state)
{
    request(5000);
    transport_failure(1);
    assert_int_equal(fx.finished, 1);
    assert_int_equal(fx.outcome, TWILIO_UNKNOWN);
    assert_int_equal(fx.starts, 1);
    assert_int_equal(fx.retry_after_ms, -1);
}

static void test_retry_after_beyond_the_deadline_fails_at_once(void **state)
{
    request(1000);
    answer(429, "{\"code\": 20429}", 5000);
    assert_int_equal(fx.finished, 1);
    assert_int_equal(fx.outcome, TWILIO_FAILED);
    assert_int_equal(fx.code, 20429);
    assert_int_equal(fx.http_status, 429);
    assert_int_equal(fx.retry_after_ms, 5000); /* what the caller should wait */
    assert_int_equal(fx.starts, 1);
}

static void test_retry_after_is_waited_for(void **state)
{
    request(5000);
    answer(429, "{\"code\": 20429}", 300);
    next_attempt();
    assert_int_equal(fx.starts, 2);
    assert_true(fx.started_ms[1] - fx.started_ms[0] >= 299);
    answer(201, "{}", -1);
    assert_int_equal(fx.outcome, TWILIO_OK);
}

static void test_attempts_are_capped(void **state)
{
    request(20000);
    while (!fx.finished) {
        answer(429, "{\"code\": 20429}", -1);
        next_attempt();
    }
    assert_int_equal(fx.outcome, TWILIO_FAILED);
    assert_int_equal(fx.attempts, 5);
    assert_int_equal(fx.starts, 5);
}

/* A read (a list, for resolving unknown outcomes) acts on nothing: its
 * failures are retried even after the request left, and it never ends
 * UNKNOWN. */
static void test_list_read_is_a_get_retried_on_any_failure(void **state)
{
    assert_int_equal(twilio_request(tw, TWILIO_API_MESSAGES_LIST, "To=%2B1&PageSize=100", 20,
                                    5000, on_done, NULL, NULL),
                     0);
    event_base_loop(fx.base, EVLOOP_ONCE);
    assert_string_equal(fx.last.method, "GET");
    assert_non_null(strstr(fx.last.url, "/Messages.json?To=%2B1&PageSize=100"));
    assert_null(fx.last.body);
    transport_failure(1);
    next_attempt();
    assert_int_equal(fx.starts, 2);
    answer(503, "{\"code\": 20503, \"message\": \"Service Unavailable\"}", -1);
    next_attempt();
    assert_int_equal(fx.starts, 3);
    answer(200, "{\"messages\": [], \"next_page_uri\": null}", -1);
    assert_int_equal(fx.outcome, TWILIO_OK);
    assert_int_equal(fx.attempts, 3);
}

static void test_list_page_uri_is_on_the_api_host(void **state)
{
    const char *uri = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json?Page=1";
    assert_int_equal(twilio_request(tw, TWILIO_API_CALLS_LIST, uri, strlen(uri), 5000, on_done,
                                    NULL, NULL),
                     0);
    event_base_loop(fx.base, EVLOOP_ONCE);
    assert_string_equal(fx.last.method, "GET");
    char want[300];
    snprintf(want, sizeof(want), "https://api.twilio.com%s", uri);
    assert_string_equal(fx.last.url, want);
    answer(200, "{\"calls\": []}", -1);
    assert_int_equal(fx.outcome, TWILIO_OK);
}

static void test_attempts_pages_stay_on_verify(void **state)
{
    const char *good = "https://verify.twilio.com/v2/Attempts?PageToken=PA100";
    const char *other = "https://verify.twilio.com.example/v2/Attempts";
    assert_int_equal(twilio_request(tw, TWILIO_API_VERIFY_ATTEMPTS_LIST, other, strlen(other),
                                    5000, on_done, NULL, NULL),
                     CG_EINVAL);
    assert_int_equal(twilio_request(tw, TWILIO_API_MESSAGES_LIST, good, strlen(good), 5000,
                                    on_done, NULL, NULL),
                     CG_EINVAL); /* not the 2010 API's host */
    assert_int_equal(twilio_request(tw, TWILIO_API_VERIFY_ATTEMPTS_LIST, good, strlen(good),
                                    5000, on_done, NULL, NULL),
                     0);
    event_base_loop(fx.base, EVLOOP_ONCE);
    assert_string_equal(fx.last.url, good);
    answer(200, "{\"attempts\": []}", -1);
    assert_int_equal(fx.outcome, TWILIO_OK);
}

static void test_list_that_never_gets_through_fails(void **state)
{
    assert_int_equal(twilio_request(tw, TWILIO_API_MESSAGES_LIST, "To=%2B1", 6, 300, on_done,
                                    NULL, NULL),
                     0);
    event_base_loop(fx.base, EVLOOP_ONCE);
    while (!fx.finished) {
        transport_failure(1);
        next_attempt();
    }
    assert_int_equal(fx.outcome, TWILIO_FAILED); /* never UNKNOWN: nothing was acted on */
}

/* Shutdown asks whether Twilio may have the request: not while the attempt
 * is still connecting, nor between attempts. */
static void test_on_wire_only_once_the_request_may_have_left(void **state)
{
    struct twilio_req *r = NULL;
    assert_int_equal(twilio_request(tw, TWILIO_API_MESSAGES, "To=%2B1", 6, 5000, on_done, NULL,
                                    &r),
                     0);
    assert_false(twilio_on_wire(r)); /* the first attempt has not started */
    event_base_loop(fx.base, EVLOOP_ONCE);
    fx.connecting = 1;
    assert_false(twilio_on_wire(r));
    fx.connecting = 0;
    assert_true(twilio_on_wire(r));
    answer(429, "{\"code\": 20429, \"message\": \"Too Many Requests\"}", -1);
    assert_false(twilio_on_wire(r)); /* waiting for the retry */
    twilio_cancel(r);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_ok_first_time),
        T(test_concurrency_429_retried_then_ok),
        T(test_429_with_a_final_code_is_not_retried),
        T(test_refusal_is_final),
        T(test_5xx_is_unknown_and_never_retried),
        T(test_failure_before_sending_is_retried),
        T(test_failure_after_sending_is_unknown),
        T(test_retry_after_beyond_the_deadline_fails_at_once),
        T(test_retry_after_is_waited_for),
        T(test_attempts_are_capped),
        T(test_list_read_is_a_get_retried_on_any_failure),
        T(test_list_page_uri_is_on_the_api_host),
        T(test_list_that_never_gets_through_fails),
        T(test_attempts_pages_stay_on_verify),
        T(test_on_wire_only_once_the_request_may_have_left),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
