/* flow.c: the call's state machine driven through every way out, with the
 * Redis record modules, the account budget, Twilio and the gRPC call faked
 * here (so none of their objects is linked), and the real SMS and
 * verification families in front. Each test plays the replies Redis and
 * Twilio would give, in order, and checks what the call answered and what
 * it gave back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <event2/event.h>
#include <string.h>

#include "rpc/flow.c"

#include "commsgate/v1/messaging.pb-c.h"
#include "rpc/rpc_sms.h"
#include "rpc/rpc_verify.h"

/* --- the fakes --- */

struct rpc_call {
    struct app *app;
    void *data;
    struct loop_task task;
    int64_t ms_left;
    int cancelled;
    /* what the flow answered */
    int answered, released;
    grpc_status_code code;
    enum reason reason;
    char msg[700];
    int twilio_code;
    int64_t retry_ms;
    uint8_t body[512];
    size_t body_len;
};

static struct {
    struct event_base *base;
    int on_loop;
    struct loop_task *posted;
    struct policy_req *policy, *claim;
    enum flow_policy policy_kind;
    int policies, claims;
    int recipient_down; /* the next recipient script cannot be sent */
    struct account_req *acct;
    int takes, gives, releases;
    twilio_done_fn *twilio_done;
    void *twilio_data;
    int twilio_requests, twilio_cancels, on_wire;
    int drops, settles, settled_code, opt_outs, closes, give_backs, reloads, firsts;
    int unknowns, queued, dequeued; /* resolve/'s part */
    int64_t queued_in_ms;
    const char *claim_api;
    struct redis_waiter *waiter; /* the answer waits for Redis to confirm */
    int barriers;
    int hold_barrier; /* reply_twilio leaves the waiter to the test */
} fx;

static struct config cfg;
static struct app app;
static struct rpc_call call;

void *rpc_call_app(const struct rpc_call *c) { return c->app; }
const char *rpc_call_caller(const struct rpc_call *c) { return ""; } /* no callers file */
const void *rpc_call_caller_info(const struct rpc_call *c) { return NULL; }
/* Without a callers file no quota applies (tests/integration/callers_test.py
 * covers them against Redis). */
int caller_quota_applies(const struct caller *caller, enum caller_spend spend) { return 0; }
int caller_quota_take(struct redis_ctx *r, const struct caller *caller, enum caller_spend spend,
                      const char *id, struct policy_req *req)
{
    fail_msg("a quota was taken with no caller");
    return 0;
}
void caller_quota_give_back(struct redis_ctx *r, const struct caller *caller,
                            enum caller_spend spend, const char *id)
{
    fail_msg("a quota was given back with no caller");
}
int64_t rpc_call_ms_left(const struct rpc_call *c) { return c->ms_left; }
int rpc_call_is_cancelled(const struct rpc_call *c) { return c->cancelled; }
void *rpc_call_get_data(const struct rpc_call *c) { return c->data; }
void rpc_call_set_data(struct rpc_call *c, void *data) { c->data = data; }
struct loop_task *rpc_call_task(struct rpc_call *c) { return &c->task; }
struct rpc_call *rpc_call_from_task(struct loop_task *t)
{
    return (struct rpc_call *)((char *)t - offsetof(struct rpc_call, task));
}
int rpc_call_metadata(const struct rpc_call *c, const char *key, char *buf, size_t len)
{
    return -1;
}

static void answer(struct rpc_call *c, grpc_status_code code, const char *msg)
{
    assert_int_equal(c->answered, 0); /* answered exactly once */
    c->answered = 1;
    c->code = code;
    snprintf(c->msg, sizeof(c->msg), "%s", msg ? msg : "");
}

int rpc_call_finish(struct rpc_call *c, grpc_status_code code, const char *msg,
                    const ProtobufCMessage *resp)
{
    answer(c, code, msg);
    return 0;
}
int rpc_call_finish_packed(struct rpc_call *c, const uint8_t *resp, size_t len)
{
    answer(c, GRPC_STATUS_OK, NULL);
    assert_true(len <= sizeof(c->body));
    memcpy(c->body, resp, len);
    c->body_len = len;
    return 0;
}
int rpc_call_fail(struct rpc_call *c, const struct rpc_error *e)
{
    answer(c, e->code, e->msg);
    c->reason = e->reason;
    c->twilio_code = e->twilio_code;
    c->retry_ms = e->retry_after_ms;
    return 0;
}
void rpc_call_release(struct rpc_call *c) { c->released++; }

struct event_base *loop_base(struct loop_ctx *loop) { return fx.base; }
int loop_owns(const struct event_base *base) { return fx.on_loop && base == fx.base; }
int loop_in_any(void) { return fx.on_loop; }
void loop_post(struct loop_ctx *loop, struct loop_task *task)
{
    assert_null(fx.posted);
    fx.posted = task;
}

static int record_policy(enum flow_policy kind, struct policy_req *req)
{
    assert_true(fx.on_loop);
    if (fx.recipient_down) {
        fx.recipient_down = 0;
        return CG_EREDIS;
    }
    fx.policy = req;
    fx.policy_kind = kind;
    fx.policies++;
    return 0;
}
int send_policy_check(struct redis_ctx *r, const struct config *c,
                      const struct send_policy_args *a, struct policy_req *req)
{
    return record_policy(FLOW_POLICY_SEND, req);
}
int verify_limits_start(struct redis_ctx *r, const struct config *c, const char *to,
                        const char *id, struct policy_req *req)
{
    return record_policy(FLOW_POLICY_VERIFY_START, req);
}
int verify_limits_check(struct redis_ctx *r, const struct config *c, const char *to,
                        const char *id, struct policy_req *req)
{
    return record_policy(FLOW_POLICY_VERIFY_CHECK, req);
}
void verify_limits_give_back(struct redis_ctx *r, const char *to, const char *id)
{
    fx.give_backs++;
}
int idempotency_key(char *out, size_t cap, const char *caller, const char *key)
{
    snprintf(out, cap, "idem:%s", key);
    return 0;
}
int idempotency_claim(struct idempotency_ctx *c, const char *key, const char *fp,
                      const char *owner, int64_t lease_ms, const struct idempotency_send *send,
                      struct policy_req *req)
{
    assert_true(fx.on_loop);
    assert_true(lease_ms > IDEMPOTENCY_LEASE_MARGIN_MS);
    assert_non_null(send);
    assert_true(send->form_len > 0 && strstr(send->form, "To=") == send->form);
    fx.claim_api = send->api;
    fx.claim = req;
    fx.claims++;
    return 0;
}
void send_policy_opt_out(struct redis_ctx *r, const struct config *c, const char *to)
{
    fx.opt_outs++;
}
void send_policy_close_window(struct redis_ctx *r, const char *to) { fx.closes++; }
void idempotency_settle(struct idempotency_ctx *c, const char *key,
                        const struct policy_outcome *o)
{
    fx.settles++;
    fx.settled_code = o->code;
}
void idempotency_drop(struct idempotency_ctx *c, const char *key, const char *owner)
{
    fx.drops++;
}
void idempotency_unknown(struct idempotency_ctx *c, const char *key, const char *owner)
{
    fx.unknowns++;
}
void resolve_queue_add(struct resolve_queue *q, const char *key, int64_t in_ms,
                       int keep_earlier)
{
    fx.queued++;
    fx.queued_in_ms = in_ms;
}
void resolve_queue_done(struct resolve_queue *q, const char *key) { fx.dequeued++; }
void policy_reload(struct redis_ctx *r) { fx.reloads++; }
void redis_after_writes(struct redis_ctx *r, struct redis_waiter *w)
{
    assert_null(fx.waiter);
    fx.waiter = w;
    fx.barriers++;
}
void message_status_first(struct redis_ctx *r, const char *sid, const char *status)
{
    fx.firsts++;
}

void account_take(struct account_ctx *a, struct account_req *req)
{
    assert_true(fx.on_loop);
    fx.acct = req;
    fx.takes++;
}
void account_release(struct account_ctx *a, const char *id) { fx.releases++; }
int account_give(struct account_ctx *a, const char *id, int cost, const char *slot)
{
    fx.gives++;
    return 0;
}

int twilio_request(struct twilio_ctx *t, enum twilio_api api, const char *form, size_t form_len,
                   int64_t ms_left, twilio_done_fn *done, void *data, struct twilio_req **out)
{
    assert_true(fx.on_loop);
    fx.twilio_done = done;
    fx.twilio_data = data;
    fx.twilio_requests++;
    if (out)
        *out = (struct twilio_req *)&fx;
    return 0;
}
void twilio_cancel(struct twilio_req *req) { fx.twilio_cancels++; }
void twilio_req_set_caller(struct twilio_req *req, const char *caller) {}
int twilio_on_wire(const struct twilio_req *req) { return req && fx.on_wire; }

/* --- driving it --- */

/* The settings a send needs; the credentials are the simulator's kind of
 * placeholder (nothing here talks to Twilio). */
static const char *test_env(const char *name)
{
    static const char *const vars[][2] = {
        {"TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"},
        {"TWILIO_AUTH_TOKEN", "tok-not-a-real-one"},
        {"TWILIO_PHONE_NUMBER", "+15005550006"},
        {"TWILIO_VERIFY_SERVICE_SID", "VA0123456789abcdef0123456789abcdef"},
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        if (strcmp(vars[i][0], name) == 0)
            return vars[i][1];
    return NULL;
}

static int setup(void **state)
{
    char err[256];
    memset(&fx, 0, sizeof(fx));
    memset(&call, 0, sizeof(call));
    if (config_load(&cfg, test_env, err, sizeof(err)))
        fail_msg("config: %s", err);
    fx.base = event_base_new();
    memset(&app, 0, sizeof(app));
    app.cfg = &cfg;
    app.nworkers = 1;
    app.workers[0].app = &app;
    assert_int_equal(flow_ctx_new(&app.workers[0].flows), CG_OK);
    call.app = &app;
    call.ms_left = 10000;
    return 0;
}

static int teardown(void **state)
{
    fx.on_loop = 1;
    flow_shutdown(app.workers[0].flows);
    fx.on_loop = 0;
    flow_ctx_free(&app.workers[0].flows);
    event_base_free(fx.base);
    return 0;
}

/* Queue thread: the real SendSMS handler receives the call. */
static void send_sms(const char *to, const char *key)
{
    Commsgate__V1__SendSMSRequest r = COMMSGATE__V1__SEND_SMSREQUEST__INIT;
    uint8_t buf[256];
    struct rpc_method m = {0};
    r.to = (char *)to;
    r.body = "hello";
    r.idempotency_key = (char *)key;
    size_t len = commsgate__v1__send_smsrequest__pack(&r, buf);
    rpc_sms_method(&m);
    m.on_call(&call, buf, len);
}

static void start_verification(const char *to)
{
    Commsgate__V1__StartVerificationRequest r = COMMSGATE__V1__START_VERIFICATION_REQUEST__INIT;
    uint8_t buf[256];
    struct rpc_method start = {0}, check = {0};
    r.to = (char *)to;
    size_t len = commsgate__v1__start_verification_request__pack(&r, buf);
    rpc_verify_methods(&start, &check);
    start.on_call(&call, buf, len);
}

/* The loop thread takes the posted call. */
static void deliver(void)
{
    struct loop_task *t = fx.posted;
    assert_non_null(t);
    fx.posted = NULL;
    fx.on_loop = 1;
    t->run(t);
}

static struct flow *the_flow(void)
{
    return call.data;
}

/* Redis answers this round: the recipient's script, then the account. */
static void reply_recipient(enum policy_verdict v, enum reason reason)
{
    struct policy_req *req = fx.policy;
    struct policy_result res = {.verdict = v, .reason = reason};
    assert_non_null(req);
    fx.policy = NULL;
    req->done(&res, req);
}

/* The key's record answers. */
static void reply_claim(enum policy_verdict v, enum reason reason)
{
    struct policy_req *req = fx.claim;
    struct policy_result res = {.verdict = v, .reason = reason};
    assert_non_null(req);
    fx.claim = NULL;
    req->done(&res, req);
}

static void reply_account(enum account_result res, int64_t ms)
{
    struct account_req *req = fx.acct;
    assert_non_null(req);
    fx.acct = NULL;
    if (res == ACCOUNT_OK)
        snprintf(req->slot, sizeof(req->slot), "%s", "1700000000000000");
    req->done(req, res, ms);
}

/* Redis answers the PING behind what the flow wrote (ok), or the
 * connection is lost (0). */
static void redis_confirms(int ok)
{
    struct redis_waiter *w = fx.waiter;
    assert_non_null(w);
    fx.waiter = NULL;
    w->done(w, ok);
}

static void reply_twilio_waiting(enum twilio_outcome outcome, int code, long http_status,
                                 int64_t retry_after_ms)
{
    struct twilio_result res = {.outcome = outcome,
                                .retry_after_ms = retry_after_ms,
                                .code = code,
                                .http_status = http_status,
                                .message = "from the fake",
                                .sid = outcome == TWILIO_OK ? "SM0123456789abcdef0123456789abcdef"
                                                            : NULL,
                                .status = outcome == TWILIO_OK ? "queued" : NULL};
    assert_int_equal(fx.twilio_requests > 0, 1);
    fx.twilio_done(&res, fx.twilio_data);
    if (fx.waiter && !fx.hold_barrier) {
        assert_int_equal(call.answered, 0); /* not before Redis has the writes */
        redis_confirms(1);
    }
}

static void reply_twilio(enum twilio_outcome outcome, int code, long http_status)
{
    reply_twilio_waiting(outcome, code, http_status, -1);
}

/* Let a timer fire (the flow's wait). */
static void run_timers(void)
{
    event_base_loop(fx.base, EVLOOP_ONCE);
}

/* --- the ways out --- */

static void test_sent(void **state)
{
    send_sms("+14155550100", "k1");
    deliver();
    assert_int_equal(the_flow()->state, FLOW_DECIDING);
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(the_flow()->state, FLOW_SENDING);
    assert_int_equal(the_flow()->held,
                     FLOW_HOLD_CLAIM | FLOW_HOLD_LEASE | FLOW_HOLD_SLOT | FLOW_HOLD_QUEUED);
    assert_string_equal(fx.claim_api, "Messages");
    /* Due when the claim's lease ends, should this replica die meanwhile. */
    assert_int_equal(fx.queued, 1);
    assert_int_equal(fx.queued_in_ms, the_flow()->lease_ms);
    reply_twilio(TWILIO_OK, 0, 201);
    assert_int_equal(fx.dequeued, 1);
    assert_int_equal(call.code, GRPC_STATUS_OK);
    Commsgate__V1__SendSMSResponse *r =
        commsgate__v1__send_smsresponse__unpack(NULL, call.body_len, call.body);
    assert_non_null(r);
    assert_string_equal(r->sid, "SM0123456789abcdef0123456789abcdef");
    assert_int_equal(r->segments, 1);
    commsgate__v1__send_smsresponse__free_unpacked(r, NULL);
    assert_int_equal(fx.settles, 1);
    assert_int_equal(fx.settled_code, GRPC_STATUS_OK);
    assert_int_equal(fx.releases, 1); /* the lease frees, the slot stays used */
    assert_int_equal(fx.gives, 0);
    assert_int_equal(fx.drops, 0);
    assert_int_equal(fx.firsts, 1);
}

static void test_bad_input_never_reaches_the_loop(void **state)
{
    send_sms("not a number", "");
    assert_null(fx.posted);
    assert_int_equal(call.code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(fx.takes, 0);
}

static void test_refused_by_policy(void **state)
{
    send_sms("+14155550101", "k1");
    deliver();
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_REFUSE, REASON_OPTED_OUT);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(call.code, GRPC_STATUS_FAILED_PRECONDITION);
    assert_int_equal(call.reason, REASON_OPTED_OUT);
    assert_int_equal(call.twilio_code, 0);
    assert_non_null(strstr(call.msg, "opted out"));
    assert_int_equal(fx.gives, 1); /* the account take goes back whole */
    assert_int_equal(fx.drops, 1); /* and the key's claim: nothing was sent */
    assert_int_equal(fx.twilio_requests, 0);
    assert_int_equal(app.workers[0].flows->refusals[REASON_OPTED_OUT], 1);
}

static void test_repeat_answers_the_stored_outcome(void **state)
{
    static const char body[] = "\x0a\x03" "abc";
    send_sms("+14155550102", "k1");
    deliver();
    struct policy_outcome *o = malloc(sizeof(*o) + sizeof(body));
    o->code = GRPC_STATUS_OK;
    o->body = (uint8_t *)(o + 1);
    memcpy(o->body, body, sizeof(body));
    o->body_len = sizeof(body) - 1;
    o->msg = "";
    o->twilio_code = 0;
    struct policy_result res = {.verdict = POLICY_REPEAT, .repeat = o};
    struct policy_req *req = fx.claim;
    req->done(&res, req);
    assert_null(res.repeat); /* the flow took it */
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(call.code, GRPC_STATUS_OK);
    assert_memory_equal(call.body, body, sizeof(body) - 1);
    assert_int_equal(fx.gives, 1);
    assert_int_equal(fx.twilio_requests, 0);
}

static void test_key_reused_for_another_request(void **state)
{
    send_sms("+14155550120", "k1");
    deliver();
    reply_claim(POLICY_REFUSE, REASON_IDEMPOTENCY_KEY_REUSED);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(call.code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(call.reason, REASON_IDEMPOTENCY_KEY_REUSED);
    assert_int_equal(fx.drops, 0); /* not its claim */
    assert_int_equal(fx.gives, 1);
    assert_int_equal(fx.twilio_requests, 0);
}

static void test_abandoned_key_is_unknown_not_resent(void **state)
{
    send_sms("+14155550121", "k1");
    deliver();
    reply_claim(POLICY_REFUSE, REASON_OUTCOME_UNKNOWN);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(call.code, GRPC_STATUS_UNKNOWN);
    assert_int_equal(call.reason, REASON_OUTCOME_UNKNOWN);
    assert_non_null(strstr(call.msg, "interrupted"));
    assert_int_equal(fx.twilio_requests, 0);
}

/* The claim went out, then Redis refused the recipient's script: the claim
 * is dropped once its reply says what happened. */
static void test_redis_gone_between_claim_and_recipient(void **state)
{
    fx.recipient_down = 1;
    send_sms("+14155550122", "k1");
    deliver();
    assert_null(fx.policy);
    reply_claim(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(call.code, GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(call.reason, REASON_REDIS_UNAVAILABLE);
    assert_int_equal(fx.drops, 1);
    assert_int_equal(fx.gives, 1);
    assert_int_equal(fx.twilio_requests, 0);
}

static void test_in_flight_then_sent(void **state)
{
    send_sms("+14155550103", "k1");
    deliver();
    reply_claim(POLICY_IN_FLIGHT, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(the_flow()->state, FLOW_WAITING);
    assert_int_equal(the_flow()->held, 0);
    assert_int_equal(fx.gives, 1); /* no lease is held while polling */
    run_timers();
    assert_int_equal(the_flow()->state, FLOW_DECIDING);
    assert_int_equal(fx.policies, 2);
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(fx.twilio_requests, 1);
    reply_twilio(TWILIO_OK, 0, 201);
    assert_int_equal(call.code, GRPC_STATUS_OK);
}

static void test_in_flight_past_the_deadline(void **state)
{
    call.ms_left = 60; /* the first poll (20 ms) and the answer margin do not fit */
    send_sms("+14155550104", "k1");
    deliver();
    reply_claim(POLICY_IN_FLIGHT, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(call.code, GRPC_STATUS_ABORTED);
    assert_int_equal(call.reason, REASON_IDEMPOTENCY_IN_FLIGHT);
    assert_int_equal(fx.gives, 1);
}

static void test_waiting_for_its_slot_then_cancelled(void **state)
{
    send_sms("+14155550105", "k1");
    deliver();
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 30); /* its rate slot is 30 ms ahead */
    assert_int_equal(the_flow()->state, FLOW_WAITING);
    call.cancelled = 1;
    run_timers();
    assert_int_equal(call.answered, 0);
    assert_int_equal(call.released, 1);
    assert_int_equal(fx.gives, 1);  /* lease and slot back */
    assert_int_equal(fx.drops, 1);  /* the claim too: nothing was sent */
    assert_int_equal(fx.twilio_requests, 0);
}

static void test_budget_wait_then_redis_lost(void **state)
{
    send_sms("+14155550106", "k1");
    deliver();
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_BUSY, 5);
    assert_int_equal(the_flow()->state, FLOW_WAITING);
    assert_int_equal(the_flow()->held, FLOW_HOLD_CLAIM); /* the claim waits with it */
    run_timers();
    assert_null(fx.policy); /* only the account is asked again */
    reply_account(ACCOUNT_LOST, 0);
    assert_int_equal(call.code, GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(call.reason, REASON_REDIS_UNAVAILABLE);
    assert_int_equal(fx.drops, 1); /* the earlier round's claim is not left behind */
    assert_int_equal(fx.twilio_requests, 0);
}

static void test_budget_past_the_deadline(void **state)
{
    send_sms("+14155550107", "k1");
    deliver();
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_RATE, 20000);
    assert_int_equal(call.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(call.reason, REASON_ACCOUNT_RATE_LIMITED);
    assert_int_equal(call.retry_ms, 20000);
    assert_int_equal(fx.drops, 1);
}

static void test_scripts_lost_twice(void **state)
{
    send_sms("+14155550108", "k1");
    deliver();
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_NOSCRIPT, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(fx.reloads, 1);
    assert_int_equal(fx.gives, 1);
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_NOSCRIPT, 0);
    assert_int_equal(fx.reloads, 2);
    assert_int_equal(fx.drops, 2); /* each round's claim, or the rerun would poll itself */
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(fx.twilio_requests, 1);
    reply_twilio(TWILIO_OK, 0, 201);
    assert_int_equal(call.code, GRPC_STATUS_OK);
}

static void test_scripts_keep_vanishing(void **state)
{
    send_sms("+14155550109", "");
    deliver();
    for (int i = 0; i <= MAX_RELOADS; i++) {
        reply_recipient(POLICY_NOSCRIPT, REASON_NONE);
        reply_account(ACCOUNT_OK, 0);
    }
    assert_int_equal(call.code, GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(call.reason, REASON_REDIS_UNAVAILABLE);
    assert_int_equal(fx.reloads, MAX_RELOADS);
}

static void test_shutdown_while_holding_a_slot(void **state)
{
    send_sms("+14155550110", "k1");
    deliver();
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 5000);
    assert_int_equal(the_flow()->state, FLOW_WAITING);
    flow_shutdown(app.workers[0].flows);
    assert_int_equal(call.code, GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(call.reason, REASON_SHUTTING_DOWN);
    assert_int_equal(fx.gives, 1);
    assert_int_equal(fx.drops, 1);
    assert_null(app.workers[0].flows->waiting);
}

static void test_shutdown_while_twilio_has_it(void **state)
{
    send_sms("+14155550117", "k1");
    deliver();
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(the_flow()->state, FLOW_SENDING);
    fx.on_wire = 1;
    flow_shutdown(app.workers[0].flows);
    assert_int_equal(call.code, GRPC_STATUS_UNKNOWN); /* not gRPC's CANCELLED */
    assert_int_equal(call.reason, REASON_OUTCOME_UNKNOWN);
    assert_int_equal(fx.twilio_cancels, 1);
    /* The key is left to resolve/: a repeat does not send again. */
    assert_int_equal(fx.unknowns, 1);
    assert_int_equal(fx.settles, 0);
    assert_int_equal(fx.drops, 0);
    assert_int_equal(fx.queued, 2); /* at sending, then due now */
    assert_int_equal(fx.queued_in_ms, 0);
    assert_int_equal(fx.dequeued, 0);
    assert_null(app.workers[0].flows->sending);
}

static void test_shutdown_between_twilio_attempts(void **state)
{
    send_sms("+14155550118", "k1");
    deliver();
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    fx.on_wire = 0; /* a 429 waiting for its retry */
    flow_shutdown(app.workers[0].flows);
    assert_int_equal(call.code, GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(call.reason, REASON_SHUTTING_DOWN);
    assert_int_equal(fx.drops, 1);    /* nothing was sent: the key is free */
    assert_int_equal(fx.releases, 1); /* Twilio saw the attempts */
}

static void test_no_twilio_request_starts_after_shutdown(void **state)
{
    send_sms("+14155550119", "k1");
    deliver();
    flow_shutdown(app.workers[0].flows); /* while the decision is in Redis */
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(call.code, GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(call.reason, REASON_SHUTTING_DOWN);
    assert_int_equal(fx.twilio_requests, 0);
    assert_int_equal(fx.gives, 1);
    assert_int_equal(fx.drops, 1);
}

static void test_twilio_refused_opts_out(void **state)
{
    send_sms("+14155550111", "k1");
    deliver();
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    reply_twilio(TWILIO_REFUSED, 21610, 400);
    assert_int_equal(call.code, GRPC_STATUS_FAILED_PRECONDITION);
    assert_int_equal(call.reason, REASON_OPTED_OUT);
    assert_int_equal(call.twilio_code, 21610);
    assert_int_equal(fx.opt_outs, 1);
    assert_int_equal(fx.drops, 1);    /* Twilio did not act: a repeat may send */
    assert_int_equal(fx.releases, 1); /* but the attempt used its rate slot */
    assert_int_equal(fx.gives, 0);
}

/* The caller hears of the opt-out only once Redis has it: its next send,
 * on any loop or replica, must be refused without asking Twilio. */
static void test_answer_waits_for_redis_to_have_the_opt_out(void **state)
{
    send_sms("+14155550112", NULL);
    deliver();
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    fx.hold_barrier = 1;
    reply_twilio(TWILIO_REFUSED, 21610, 400);
    assert_int_equal(fx.opt_outs, 1);
    assert_int_equal(fx.barriers, 1);
    assert_int_equal(call.answered, 0);
    assert_int_equal(the_flow()->state, FLOW_RECORDING);
    assert_int_equal(the_flow()->held, 0); /* given back already */
    redis_confirms(1);
    assert_int_equal(call.answered, 1);
    assert_int_equal(call.reason, REASON_OPTED_OUT);
}

/* The message's first status (GetMessage) likewise; a lost connection
 * still answers, with what Twilio said. */
static void test_sent_answer_waits_for_its_status(void **state)
{
    send_sms("+14155550113", NULL);
    deliver();
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    fx.hold_barrier = 1;
    reply_twilio(TWILIO_OK, 0, 201);
    assert_int_equal(fx.firsts, 1);
    assert_int_equal(call.answered, 0);
    redis_confirms(0);
    assert_int_equal(call.answered, 1);
    assert_int_equal(call.code, GRPC_STATUS_OK);
    assert_true(call.body_len > 0);
}

/* Nothing written: answered at once. */
static void test_refusal_that_writes_nothing_answers_at_once(void **state)
{
    start_verification("+14155550115");
    deliver();
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    reply_twilio(TWILIO_REFUSED, 60200, 400);
    assert_int_equal(fx.barriers, 0);
    assert_int_equal(call.answered, 1);
}

static void test_twilio_failed(void **state)
{
    send_sms("+14155550112", "k1");
    deliver();
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    reply_twilio(TWILIO_FAILED, 0, 0);
    assert_int_equal(call.code, GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(call.reason, REASON_TWILIO_UNREACHABLE);
    assert_int_equal(fx.drops, 1);
    assert_int_equal(fx.releases, 1);
    assert_int_equal(fx.settles, 0);
}

static void test_twilio_429_past_the_deadline(void **state)
{
    send_sms("+14155550116", "k1");
    deliver();
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    reply_twilio_waiting(TWILIO_FAILED, 20429, 429, 1800);
    assert_int_equal(call.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(call.reason, REASON_TWILIO_ERROR);
    assert_int_equal(call.twilio_code, 20429);
    assert_int_equal(call.retry_ms, 1800);
    assert_int_equal(fx.drops, 1); /* Twilio did not act */
    assert_int_equal(fx.releases, 1);
}

static void test_twilio_outcome_unknown(void **state)
{
    send_sms("+14155550113", "k1");
    deliver();
    reply_claim(POLICY_GO, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    reply_twilio(TWILIO_UNKNOWN, 0, 0);
    assert_int_equal(call.code, GRPC_STATUS_UNKNOWN);
    assert_int_equal(call.reason, REASON_OUTCOME_UNKNOWN);
    assert_non_null(strstr(call.msg, "repeat with the same idempotency_key"));
    assert_int_equal(fx.unknowns, 1); /* a repeat never sends again */
    assert_int_equal(fx.settles, 0);
    assert_int_equal(fx.queued_in_ms, 0);
    assert_int_equal(fx.dequeued, 0);
    assert_int_equal(fx.drops, 0);
    assert_int_equal(fx.releases, 1);
}

static void test_unkeyed_outcome_unknown(void **state)
{
    send_sms("+14155550123", "");
    deliver();
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(the_flow()->held, FLOW_HOLD_LEASE | FLOW_HOLD_SLOT); /* nothing queued */
    reply_twilio(TWILIO_UNKNOWN, 0, 0);
    assert_int_equal(call.code, GRPC_STATUS_UNKNOWN);
    assert_non_null(strstr(call.msg, "do not retry without an idempotency_key"));
    assert_int_equal(fx.queued + fx.unknowns + fx.settles, 0);
}

static void test_repeat_of_a_found_key(void **state)
{
    send_sms("+14155550124", "k1");
    deliver();
    struct policy_outcome *o = calloc(1, sizeof(*o) + 64);
    o->sid = (char *)(o + 1);
    strcpy(o->sid, "SMfound");
    o->status = o->sid + 8;
    strcpy(o->status, "delivered");
    struct policy_result res = {.verdict = POLICY_FOUND, .repeat = o};
    struct policy_req *req = fx.claim;
    req->done(&res, req);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(call.code, GRPC_STATUS_OK);
    Commsgate__V1__SendSMSResponse *r =
        commsgate__v1__send_smsresponse__unpack(NULL, call.body_len, call.body);
    assert_non_null(r);
    assert_string_equal(r->sid, "SMfound");
    assert_string_equal(r->status, "delivered");
    assert_int_equal(r->segments, 1); /* from this request, the same as the first */
    commsgate__v1__send_smsresponse__free_unpacked(r, NULL);
    assert_int_equal(fx.gives, 1); /* a repeat is free */
    assert_int_equal(fx.twilio_requests, 0);
}

static void test_resolving_then_found(void **state)
{
    send_sms("+14155550125", "k1");
    deliver();
    reply_claim(POLICY_RESOLVING, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(the_flow()->state, FLOW_WAITING);
    assert_int_equal(fx.queued, 1); /* made sure it is queued */
    assert_int_equal(the_flow()->held, 0);
    run_timers();
    reply_claim(POLICY_RESOLVING, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(the_flow()->state, FLOW_WAITING);
    assert_int_equal(fx.queued, 1); /* queued once, not once per poll */
    assert_int_equal(fx.twilio_requests, 0);
}

static void test_resolving_past_the_deadline(void **state)
{
    call.ms_left = 400; /* one poll does not fit */
    send_sms("+14155550126", "k1");
    deliver();
    reply_claim(POLICY_RESOLVING, REASON_NONE);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(call.code, GRPC_STATUS_ABORTED);
    assert_int_equal(call.reason, REASON_OUTCOME_RESOLVING);
    assert_int_equal(call.retry_ms, 1000);
    assert_non_null(strstr(call.msg, "asking Twilio"));
    assert_int_equal(fx.twilio_requests, 0);
    assert_int_equal(fx.drops, 0);
}

static void test_verification_place_given_back(void **state)
{
    start_verification("+14155550114");
    deliver();
    assert_int_equal(fx.policy_kind, FLOW_POLICY_VERIFY_START);
    reply_recipient(POLICY_GO, REASON_NONE);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(the_flow()->held, FLOW_HOLD_PLACE | FLOW_HOLD_LEASE);
    reply_twilio(TWILIO_REFUSED, 60203, 429);
    assert_int_equal(call.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(call.reason, REASON_VERIFY_SEND_LIMIT);
    assert_int_equal(call.retry_ms, 600000);
    assert_int_equal(fx.give_backs, 1);
}

static void test_verification_limit(void **state)
{
    start_verification("+14155550115");
    deliver();
    struct policy_result res = {.verdict = POLICY_REFUSE, .reason = REASON_VERIFY_COOLDOWN,
                                .ms = 29001};
    struct policy_req *req = fx.policy;
    req->done(&res, req);
    reply_account(ACCOUNT_OK, 0);
    assert_int_equal(call.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(call.reason, REASON_VERIFY_COOLDOWN);
    assert_int_equal(call.retry_ms, 29001);
    assert_non_null(strstr(call.msg, "retry in 30 s"));
    assert_int_equal(fx.give_backs, 0); /* refused: no place was reserved */
}

static void test_illegal_moves(void **state)
{
    assert_true(legal(FLOW_PREPARED, FLOW_DECIDING));
    assert_true(legal(FLOW_WAITING, FLOW_SENDING));
    assert_false(legal(FLOW_SENDING, FLOW_WAITING));
    assert_false(legal(FLOW_DONE, FLOW_DECIDING));
    assert_false(legal(FLOW_PREPARED, FLOW_SENDING));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_sent),
        T(test_bad_input_never_reaches_the_loop),
        T(test_refused_by_policy),
        T(test_repeat_answers_the_stored_outcome),
        T(test_key_reused_for_another_request),
        T(test_abandoned_key_is_unknown_not_resent),
        T(test_redis_gone_between_claim_and_recipient),
        T(test_in_flight_then_sent),
        T(test_in_flight_past_the_deadline),
        T(test_waiting_for_its_slot_then_cancelled),
        T(test_budget_wait_then_redis_lost),
        T(test_budget_past_the_deadline),
        T(test_scripts_lost_twice),
        T(test_scripts_keep_vanishing),
        T(test_shutdown_while_holding_a_slot),
        T(test_shutdown_while_twilio_has_it),
        T(test_shutdown_between_twilio_attempts),
        T(test_no_twilio_request_starts_after_shutdown),
        T(test_twilio_refused_opts_out),
        T(test_answer_waits_for_redis_to_have_the_opt_out),
        T(test_sent_answer_waits_for_its_status),
        T(test_refusal_that_writes_nothing_answers_at_once),
        T(test_twilio_failed),
        T(test_twilio_429_past_the_deadline),
        T(test_twilio_outcome_unknown),
        T(test_unkeyed_outcome_unknown),
        T(test_repeat_of_a_found_key),
        T(test_resolving_then_found),
        T(test_resolving_past_the_deadline),
        T(test_verification_place_given_back),
        T(test_verification_limit),
        cmocka_unit_test(test_illegal_moves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
