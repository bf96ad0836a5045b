/* The shared RPC flow: policy in one Redis round trip, Twilio, answer. */
#include "flow.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "../app.h"
#include "../core/config.h"
#include "../core/error.h"
#include "../core/log.h"
#include "../loop/loop.h"
#include "../redis/redis.h"
#include "../twilio/form.h"

/* Time kept back from the caller's deadline to answer it. */
#define ANSWER_MARGIN_MS 50
/* Polls of an idempotency key still in flight: first wait, growth, cap. */
#define POLL_FIRST_MS 20
#define POLL_CAP_MS 250
#define RESPONSE_MAX 4096
/* Longest a Twilio request (with its retries) may take, deadline or not;
 * twilio-node's default timeout. */
#define TWILIO_MAX_MS 30000

static void run_policy(struct flow *f);

static char replica[17];
/* Flows waiting on their timer; loop thread only. */
static struct flow *waiting;
static int shutting_down;

static void wait_unlink(struct flow *f)
{
    if (f->wait_prev)
        f->wait_prev->wait_next = f->wait_next;
    else if (waiting == f)
        waiting = f->wait_next;
    if (f->wait_next)
        f->wait_next->wait_prev = f->wait_prev;
    f->wait_prev = f->wait_next = NULL;
}
static atomic_ulong next_id;

/* A per-process random prefix, so ids are unique across replicas. */
static pthread_once_t replica_once = PTHREAD_ONCE_INIT;

static void replica_init(void)
{
    unsigned char r[8];
    /* Uniqueness, not secrecy: the kernel's generator, so nothing starts
     * OpenSSL's (half a megabyte of memory) before a request needs it. */
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = ((uint64_t)getpid() << 40) ^ (uint64_t)ts.tv_sec * 1000000000u ^
                     (uint64_t)ts.tv_nsec;
        memcpy(r, &x, sizeof(r));
    }
    for (int i = 0; i < 8; i++)
        snprintf(replica + 2 * i, 3, "%02x", r[i]);
}

/* Any thread (queue threads make flows concurrently). */
static void make_id(char *out, size_t len)
{
    pthread_once(&replica_once, replica_init);
    snprintf(out, len, "%s-%lu", replica, atomic_fetch_add(&next_id, 1));
}

struct flow *flow_new(struct rpc_call *call, const struct flow_kind *kind)
{
    struct flow *f = calloc(1, sizeof(*f));
    if (!f) {
        rpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
        return NULL;
    }
    f->call = call;
    f->kind = kind;
    f->app = rpc_call_app(call);
    f->need_number = f->need_account = 1;
    make_id(f->id, sizeof(f->id));
    return f;
}

static void flow_free(struct flow *f)
{
    wait_unlink(f);
    if (f->timer)
        event_free(f->timer);
    free(f->form);
    free(f->repeat_body);
    free(f);
}

void flow_reject(struct flow *f, const struct rpc_error *err)
{
    rpc_call_fail(f->call, err);
    flow_free(f);
}

/* Loop thread only (see flow_key). */
static char scratch_keys[3][FLOW_KEY_MAX];
static char scratch_args[6][FLOW_ARG_MAX];

const char *flow_key(struct flow *f, int i, const char *suffix)
{
    snprintf(scratch_keys[i], FLOW_KEY_MAX, "cg:{%s}:%s", f->to, suffix);
    return scratch_keys[i];
}

const char *flow_arg(struct flow *f, int i, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(scratch_args[i], FLOW_ARG_MAX, fmt, ap);
    va_end(ap);
    return scratch_args[i];
}

void flow_set_idempotency(struct flow *f, const char *key, const uint8_t *req, size_t req_len)
{
    char caller[64];
    unsigned char digest[SHA256_DIGEST_LENGTH];

    if (!key || !*key) {
        f->idem[0] = '\0';
        return;
    }
    if (rpc_call_metadata(f->call, "commsgate-caller", caller, sizeof(caller)) <= 0)
        strcpy(caller, "default");
    snprintf(f->idem, sizeof(f->idem), "cg:{%s}:idem:%s:%s:%s", f->to, f->kind->rpc, caller, key);
    SHA256(req, req_len, digest);
    for (int i = 0; i < 16; i++)
        snprintf(f->fp + 2 * i, 3, "%02x", digest[i]);
}

void flow_redis(struct flow *f, int argc, const char **argv, const size_t *lens)
{
    if (redis_command_argv(f->app->redis, redis_on_write, (void *)argv[0], argc, argv, lens))
        log_event(LOG_LEVEL_WARN, "redis_write_skipped",
                  json_pack("{s:s, s:s}", "what", argv[0], "rpc", f->kind->rpc));
}

static void give_back_account(struct flow *f)
{
    if (!f->have_lease)
        return;
    f->have_lease = 0;
    if (account_give(f->app->account, f->id, f->cost, f->acct.slot))
        log_warn("redis_write_skipped", "account lease %s not given back: Redis down", f->id);
}

/* The request went to Twilio: free its place among those in flight, but
 * keep its place in the rate. */
static void release_lease(struct flow *f)
{
    if (!f->have_lease)
        return;
    f->have_lease = 0;
    account_release(f->app->account, f->id);
}

/* Refusals by reason; loop thread only. */
static unsigned long refusals[REASON_COUNT];

static void count_refusal(enum reason reason)
{
    if (reason_name(reason))
        refusals[reason]++;
}

void flow_metrics(struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP commsgate_policy_refusals_total Calls refused by policy or "
                             "Twilio, by reason.\n# TYPE commsgate_policy_refusals_total counter\n");
    for (int r = 0; r < REASON_COUNT; r++)
        if (refusals[r])
            evbuffer_add_printf(out, "commsgate_policy_refusals_total{reason=\"%s\"} %lu\n",
                                reason_name(r), refusals[r]);
}

/* Ends the flow with an error. */
static void fail(struct flow *f, const struct rpc_error *err)
{
    count_refusal(err->reason);
    give_back_account(f);
    rpc_call_fail(f->call, err);
    flow_free(f);
}

static void fail_simple(struct flow *f, grpc_status_code code, enum reason reason, const char *msg)
{
    struct rpc_error e = {.code = code, .msg = msg, .reason = reason, .retry_after_ms = -1};
    fail(f, &e);
}

static void store_outcome(struct flow *f, int code, const uint8_t *body, size_t len,
                          const char *msg, int twilio_code)
{
    char c[12], ttl[24], tw[12];
    if (!f->idem[0])
        return;
    snprintf(c, sizeof(c), "%d", code);
    snprintf(tw, sizeof(tw), "%d", twilio_code);
    snprintf(ttl, sizeof(ttl), "%d", f->app->cfg->idempotency_ttl_s);
    const char *argv[] = {"HSET", f->idem, "state", "done", "code", c, "body",
                          body ? (const char *)body : "", "msg", msg ? msg : "", "tw", tw};
    size_t lens[12];
    for (int i = 0; i < 12; i++)
        lens[i] = strlen(argv[i]);
    lens[7] = body ? len : 0;
    flow_redis(f, 12, argv, lens);
    const char *exp[] = {"EXPIRE", f->idem, ttl};
    flow_redis(f, 3, exp, NULL);
}

static void drop_claim(struct flow *f)
{
    if (!f->idem[0])
        return;
    const char *argv[] = {"DEL", f->idem};
    flow_redis(f, 2, argv, NULL);
}

static void answer_repeat(struct flow *f)
{
    int code = atoi(f->repeat_code);
    give_back_account(f);
    if (code == GRPC_STATUS_OK) {
        rpc_call_finish_packed(f->call, (const uint8_t *)f->repeat_body, f->repeat_len);
    } else {
        struct rpc_error e = {.code = (grpc_status_code)code,
                              .msg = f->repeat_msg,
                              .reason = f->repeat_twilio ? REASON_TWILIO_ERROR : REASON_OUTCOME_UNKNOWN,
                              .twilio_code = f->repeat_twilio,
                              .retry_after_ms = -1};
        rpc_call_fail(f->call, &e);
    }
    flow_free(f);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    wait_unlink(arg);
    run_policy(arg);
}

/* Runs the policy again after `ms`, if the deadline allows. */
static int retry_after(struct flow *f, int64_t ms)
{
    if (shutting_down || ms + ANSWER_MARGIN_MS >= rpc_call_ms_left(f->call))
        return -1;
    if (!f->timer)
        f->timer = evtimer_new(loop_base(f->app->loop), on_timer, f);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    if (!f->timer || evtimer_add(f->timer, &tv))
        return -1;
    f->wait_next = waiting;
    if (waiting)
        waiting->wait_prev = f;
    waiting = f;
    return 0;
}

void flow_shutdown(void)
{
    shutting_down = 1;
    while (waiting) {
        struct flow *f = waiting;
        wait_unlink(f);
        if (!f->need_number && f->verdict == FLOW_GO) {
            if (f->kind->undo)
                f->kind->undo(f);
            drop_claim(f);
        }
        fail_simple(f, GRPC_STATUS_UNAVAILABLE, REASON_SHUTTING_DOWN,
                    "commsgate is shutting down; nothing was sent");
    }
}

/* The status Twilio gave at acceptance, as if it were the first status
 * callback (Twilio sends none for it), so GetMessage knows the message. */
static void track_message(struct flow *f, const char *sid, const char *status)
{
    char key[48], ev[64];
    snprintf(key, sizeof(key), "cg:{%s}:msg", sid);
    snprintf(ev, sizeof(ev), "cg:{%s}:ev:%s", sid, status);
    int rank = strcmp(status, "queued") == 0 ? 1 : 0; /* queued, or accepted/scheduled */
    const char *keys[] = {key, ev};
    const char *args[] = {status, rank ? "1" : "0", "", "604800"};
    if (policy_eval(f->app->redis, POLICY_MESSAGE_STATUS, 2, keys, 4, args, redis_on_write,
                    (void *)"message status"))
        log_warn("redis_write_skipped", "status of %s not recorded: Redis down", sid);
}

/* What Twilio's refusal tells the caller, and what it changes here: data
 * from Twilio's error table, for the actions this family honours. */
static void twilio_refusal(struct flow *f, const struct twilio_result *res, struct rpc_error *e)
{
    const struct twilio_error_info *info = twilio_error_for(res->code, res->http_status);
    unsigned act = info ? info->action : TWILIO_ACTION_NONE;

    snprintf(f->errmsg, sizeof(f->errmsg), "Twilio refused (%d): %s", res->code,
             info && info->code == res->code ? info->message : res->message);
    e->code = info ? info->status : twilio_error_status_for_http(res->http_status);
    e->msg = f->errmsg;
    e->reason = REASON_TWILIO_ERROR;
    e->twilio_code = res->code;
    if (!info || (act && !(act & f->kind->twilio_actions)))
        return;
    e->reason = info->reason;
    e->retry_after_ms = info->retry_after_ms;
    if (act == TWILIO_ACTION_OPT_OUT)
        flow_optout(f);
    else if (act == TWILIO_ACTION_CLOSE_WINDOW)
        flow_close_window(f);
    else if (act == TWILIO_ACTION_NOT_FOUND && f->kind->not_found_fmt)
        snprintf(f->errmsg, sizeof(f->errmsg), f->kind->not_found_fmt, f->to);
}

static void on_twilio(const struct twilio_result *res, void *data)
{
    struct flow *f = data;
    struct rpc_error e = {.retry_after_ms = -1};
    uint8_t buf[RESPONSE_MAX];

    switch (res->outcome) {
    case TWILIO_OK: {
        size_t len = f->kind->respond(f, res, buf, sizeof(buf), &e);
        release_lease(f);
        if (f->kind->tracks_message && res->sid)
            track_message(f, res->sid, res->status ? res->status : "queued");
        if (len) {
            store_outcome(f, GRPC_STATUS_OK, buf, len, NULL, 0);
            rpc_call_finish_packed(f->call, buf, len);
        } else {
            store_outcome(f, e.code, NULL, 0, e.msg, e.twilio_code);
            rpc_call_fail(f->call, &e);
        }
        flow_free(f);
        return;
    }
    case TWILIO_REFUSED:
        twilio_refusal(f, res, &e);
        break;
    case TWILIO_FAILED:
        snprintf(f->errmsg, sizeof(f->errmsg), "Twilio could not be reached, nothing was sent: %s",
                 res->message);
        e.code = GRPC_STATUS_UNAVAILABLE;
        e.msg = f->errmsg;
        e.reason = REASON_TWILIO_UNREACHABLE;
        e.twilio_code = res->code;
        break;
    case TWILIO_UNKNOWN:
        /* Twilio may have acted: never undo, never let a repeat send again. */
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "outcome unknown: Twilio may have accepted the request (%s); do not retry "
                 "without an idempotency_key",
                 res->message);
        e.code = GRPC_STATUS_UNAVAILABLE;
        e.msg = f->errmsg;
        e.reason = REASON_OUTCOME_UNKNOWN;
        release_lease(f);
        store_outcome(f, e.code, NULL, 0, e.msg, 0);
        rpc_call_fail(f->call, &e);
        flow_free(f);
        return;
    }
    /* Refused or failed: Twilio did not act, so what the policy reserved
     * goes back and a repeat of the key may try again. */
    if (f->kind->undo)
        f->kind->undo(f);
    drop_claim(f);
    release_lease(f); /* keep the rate place: Twilio saw the attempt */
    fail(f, &e);
}

static void send_to_twilio(struct flow *f)
{
    int64_t left = rpc_call_ms_left(f->call) - ANSWER_MARGIN_MS;
    if (left > TWILIO_MAX_MS)
        left = TWILIO_MAX_MS; /* a caller without a deadline still gets an answer */
    if (left <= 0) {
        if (f->kind->undo)
            f->kind->undo(f);
        drop_claim(f);
        fail_simple(f, GRPC_STATUS_DEADLINE_EXCEEDED, REASON_DEADLINE, "deadline reached before Twilio was called");
        return;
    }
    if (twilio_request(f->app->twilio, f->kind->api, f->form, f->form_len, left, on_twilio, f,
                       NULL)) {
        if (f->kind->undo)
            f->kind->undo(f);
        drop_claim(f);
        fail_simple(f, GRPC_STATUS_INTERNAL, REASON_INTERNAL, "cannot start the Twilio request");
    }
}

/* Both replies are in: decide what happens next. */
static void decide(struct flow *f)
{
    /* What this round's recipient script reserved, if anything. */
    int claimed_now = f->need_number && !f->number_lost && !f->number_noscript &&
                      f->verdict == FLOW_GO;
    if (f->number_lost || f->account_lost) {
        if (claimed_now) {
            if (f->kind->undo)
                f->kind->undo(f);
            drop_claim(f);
        }
        fail_simple(f, GRPC_STATUS_UNAVAILABLE, REASON_REDIS_UNAVAILABLE,
                    "Redis connection lost during the policy check; nothing was sent");
        return;
    }
    if (f->number_noscript || f->account_noscript) {
        /* Redis lost the scripts (flush, failover): undo what this round
         * did, reload, and run the policy again. */
        if (claimed_now) {
            if (f->kind->undo)
                f->kind->undo(f);
            drop_claim(f);
        }
        if (f->polls++ > 3) {
            fail_simple(f, GRPC_STATUS_UNAVAILABLE, REASON_REDIS_UNAVAILABLE,
                        "Redis keeps losing the policy scripts");
            return;
        }
        give_back_account(f);
        f->need_number = f->need_account = 1;
        policy_reload(f->app->redis);
        run_policy(f);
        return;
    }
    if (f->need_number) {
        switch (f->verdict) {
        case FLOW_GO:
            f->need_number = 0;
            break;
        case FLOW_REFUSE:
            fail(f, &f->err);
            return;
        case FLOW_REPEAT:
            answer_repeat(f);
            return;
        case FLOW_IN_FLIGHT: {
            int64_t wait = POLL_FIRST_MS << (f->polls < 4 ? f->polls : 4);
            f->polls++;
            give_back_account(f);
            f->need_account = 1;
            if (retry_after(f, wait > POLL_CAP_MS ? POLL_CAP_MS : wait))
                fail_simple(f, GRPC_STATUS_ABORTED, REASON_IDEMPOTENCY_IN_FLIGHT,
                            "a request with this idempotency_key is still in flight; retry with "
                            "the same key to get its outcome");
            return;
        }
        }
    }
    if (f->need_account) {
        if (f->account_wait_ms > 0) {
            if (retry_after(f, f->account_wait_ms) == 0)
                return;
            if (f->kind->undo)
                f->kind->undo(f);
            drop_claim(f);
            snprintf(f->errmsg, sizeof(f->errmsg),
                     "account send budget exhausted (%d segments/s, %d requests in flight); "
                     "retry after %lld ms",
                     f->app->cfg->send_rate, f->app->cfg->twilio_concurrency,
                     (long long)f->account_wait_ms);
            struct rpc_error e = {.code = GRPC_STATUS_RESOURCE_EXHAUSTED,
                                  .msg = f->errmsg,
                                  .reason = REASON_ACCOUNT_RATE_LIMITED,
                                  .retry_after_ms = f->account_wait_ms};
            fail(f, &e);
            return;
        }
        f->need_account = 0;
        if (f->account_delay_ms > 0) {
            /* Our rate slot is ahead: wait for it here, without asking again. */
            int64_t delay = f->account_delay_ms;
            f->account_delay_ms = 0;
            if (retry_after(f, delay) == 0)
                return;
            if (f->kind->undo)
                f->kind->undo(f);
            drop_claim(f);
            if (shutting_down)
                fail_simple(f, GRPC_STATUS_UNAVAILABLE, REASON_SHUTTING_DOWN,
                            "commsgate is shutting down; nothing was sent");
            else
                fail_simple(f, GRPC_STATUS_DEADLINE_EXCEEDED, REASON_DEADLINE,
                            "deadline reached before the account's send slot; nothing was sent");
            return;
        }
    }
    send_to_twilio(f);
}

static void reply_done(struct flow *f)
{
    if (--f->pending == 0)
        decide(f);
}

static void on_number(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct flow *f = privdata;
    const redisReply *r = reply;
    if (!r)
        f->number_lost = 1;
    else if (policy_is_noscript(r))
        f->number_noscript = 1;
    else if (r->type == REDIS_REPLY_ERROR) {
        log_event(LOG_LEVEL_ERROR, "policy_script_error",
                  json_pack("{s:s, s:s}", "rpc", f->kind->rpc, "reply", r->str));
        f->number_lost = 1;
    } else {
        f->verdict = f->kind->decide(f, r, &f->err);
        if (f->verdict == FLOW_REPEAT && r->type == REDIS_REPLY_ARRAY && r->elements >= 3) {
            /* send.lua: {'repeat', code, body, msg, twilio_code}. */
            snprintf(f->repeat_code, sizeof(f->repeat_code), "%.*s", (int)r->element[1]->len,
                     r->element[1]->str ? r->element[1]->str : "0");
            f->repeat_len = r->element[2]->len;
            f->repeat_body = malloc(f->repeat_len + 1);
            if (f->repeat_body)
                memcpy(f->repeat_body, r->element[2]->str, f->repeat_len);
            else
                f->number_lost = 1;
            if (r->elements >= 5) {
                snprintf(f->repeat_msg, sizeof(f->repeat_msg), "%.*s", (int)r->element[3]->len,
                         r->element[3]->str ? r->element[3]->str : "");
                f->repeat_twilio = atoi(r->element[4]->str ? r->element[4]->str : "0");
            }
        }
    }
    reply_done(f);
}

static void on_account(struct account_req *req, enum account_result res, int64_t ms)
{
    struct flow *f = req->data;
    f->account_wait_ms = f->account_delay_ms = 0;
    switch (res) {
    case ACCOUNT_OK:
        f->have_lease = 1;
        f->account_delay_ms = ms;
        break;
    case ACCOUNT_RATE:
    case ACCOUNT_BUSY:
        f->account_wait_ms = ms;
        break;
    case ACCOUNT_NOSCRIPT:
        f->account_noscript = 1;
        break;
    case ACCOUNT_LOST:
        f->account_lost = 1;
        break;
    }
    reply_done(f);
}

/* The account take for this round: a lease for the whole deadline (at most
 * 2 min), and a rate slot no further ahead than the deadline allows. */
static void take_account(struct flow *f)
{
    int64_t left = rpc_call_ms_left(f->call);
    int64_t wait = left - ANSWER_MARGIN_MS - 1;
    f->acct.id = f->id;
    f->acct.cost = f->cost;
    f->acct.lease_ms = left > 120000 ? 120000 : left + 1000;
    f->acct.max_wait_ms = wait < 0 ? 0 : wait > TWILIO_MAX_MS ? TWILIO_MAX_MS : wait;
    f->acct.done = on_account;
    f->acct.data = f;
    account_take(f->app->account, &f->acct);
}

/* Loop thread: sends whichever scripts are still needed, in one pipeline. */
static void run_policy(struct flow *f)
{
    const char *keys[4], *args[8];
    int nkeys = 0, nargs = 0;

    if (rpc_call_is_cancelled(f->call)) {
        give_back_account(f);
        if (!f->need_number && f->verdict == FLOW_GO) {
            if (f->kind->undo)
                f->kind->undo(f);
            drop_claim(f);
        }
        rpc_call_release(f->call);
        flow_free(f);
        return;
    }
    f->number_lost = f->account_lost = 0;
    f->number_noscript = f->account_noscript = 0;
    f->pending = f->need_number + f->need_account;
    if (f->need_number) {
        if (f->kind->policy_args(f, keys, &nkeys, args, &nargs) ||
            policy_eval(f->app->redis, f->kind->script, nkeys, keys, nargs, args, on_number, f)) {
            fail_simple(f, GRPC_STATUS_UNAVAILABLE, REASON_REDIS_UNAVAILABLE,
                        "Redis is unreachable; nothing was sent");
            return;
        }
    }
    if (f->need_account)
        take_account(f);
    if (f->pending == 0)
        decide(f);
}

static void flow_task(struct loop_task *task)
{
    run_policy(rpc_call_get_data(rpc_call_from_task(task)));
}

void flow_start(struct flow *f)
{
    rpc_call_set_data(f->call, f);
    rpc_call_task(f->call)->run = flow_task;
    loop_post(f->app->loop, rpc_call_task(f->call));
}

int flow_send_args(struct flow *f, int check_optout, int needs_window, const char **keys,
                   int *nkeys, const char **args, int *nargs)
{
    const struct config *cfg = f->app->cfg;
    keys[0] = flow_key(f, 0, "optout");
    keys[1] = flow_key(f, 1, "wa");
    *nkeys = 2;
    if (f->idem[0])
        keys[(*nkeys)++] = f->idem;
    args[0] = check_optout ? "1" : "0";
    args[1] = needs_window ? "1" : "0";
    args[2] = flow_arg(f, 2, "%lld", (long long)cfg->whatsapp_window_s * 1000);
    args[3] = flow_arg(f, 3, "%d", cfg->idempotency_ttl_s);
    args[4] = f->fp[0] ? f->fp : "-";
    *nargs = 5;
    return 0;
}

static const char *element(const redisReply *r, size_t i)
{
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements || !r->element[i]->str)
        return "";
    return r->element[i]->str;
}

enum flow_verdict flow_send_decide(struct flow *f, const redisReply *r, struct rpc_error *err)
{
    const char *what = element(r, 0);

    err->retry_after_ms = -1;
    if (strcmp(what, "ok") == 0)
        return FLOW_GO;
    if (strcmp(what, "repeat") == 0)
        return FLOW_REPEAT;
    if (strcmp(what, "in_flight") == 0)
        return FLOW_IN_FLIGHT;
    err->msg = f->errmsg;
    if (strcmp(what, "opted_out") == 0) {
        err->code = GRPC_STATUS_FAILED_PRECONDITION;
        err->reason = REASON_OPTED_OUT;
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "%s has opted out (replied STOP); nothing is sent until they reply START",
                 f->to);
    } else if (strcmp(what, "window_closed") == 0) {
        long long closed = atoll(element(r, 1));
        err->code = GRPC_STATUS_FAILED_PRECONDITION;
        err->reason = REASON_WHATSAPP_WINDOW_CLOSED;
        if (closed > 0) {
            char when[32];
            time_t t = (time_t)(closed / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
            snprintf(f->errmsg, sizeof(f->errmsg),
                     "the WhatsApp 24-hour customer-service window with %s closed at %s; "
                     "outside it only a template (content_sid) can be sent",
                     f->to, when);
        } else {
            snprintf(f->errmsg, sizeof(f->errmsg),
                     "the WhatsApp 24-hour customer-service window with %s is not open (no "
                     "message from them); outside it only a template (content_sid) can be sent",
                     f->to);
        }
    } else if (strcmp(what, "mismatch") == 0) {
        err->code = GRPC_STATUS_INVALID_ARGUMENT;
        err->reason = REASON_IDEMPOTENCY_KEY_REUSED;
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "idempotency_key was already used for a different request");
    } else {
        err->code = GRPC_STATUS_INTERNAL;
        err->reason = REASON_INTERNAL;
        snprintf(f->errmsg, sizeof(f->errmsg), "unexpected policy answer '%s'", what);
    }
    return FLOW_REFUSE;
}

void flow_optout(struct flow *f)
{
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)f->app->cfg->optout_ttl_days * 86400);
    const char *argv[] = {"SET", flow_key(f, 0, "optout"), "1", "EX", ttl};
    flow_redis(f, 5, argv, NULL);
}

void flow_close_window(struct flow *f)
{
    const char *argv[] = {"DEL", flow_key(f, 1, "wa")};
    flow_redis(f, 2, argv, NULL);
}

int flow_set_form(struct flow *f, const struct form *form)
{
    if (form_ok(form))
        return CG_EINVAL;
    f->form = malloc(form->len + 1);
    if (!f->form)
        return CG_ENOMEM;
    memcpy(f->form, form->buf, form->len);
    f->form[form->len] = '\0';
    f->form_len = form->len;
    return CG_OK;
}

size_t flow_pack(const ProtobufCMessage *m, uint8_t *buf, size_t cap)
{
    if (protobuf_c_message_get_packed_size(m) > cap)
        return 0;
    return protobuf_c_message_pack(m, buf);
}

void flow_handle(struct rpc_call *call, const uint8_t *req, size_t len,
                 const struct flow_kind *kind, const ProtobufCMessageDescriptor *desc,
                 flow_prepare_fn *prepare)
{
    struct rpc_error err = {.code = GRPC_STATUS_INVALID_ARGUMENT, .retry_after_ms = -1};
    char msg[160];
    struct flow *f;

    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, req);
    if (!m) {
        snprintf(msg, sizeof(msg), "not a valid %s", desc->short_name);
        rpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, msg, NULL);
        return;
    }
    f = flow_new(call, kind);
    if (f) {
        err.msg = f->errmsg;
        if (prepare(f, m, req, len, &err))
            flow_reject(f, &err);
        else
            flow_start(f);
    }
    protobuf_c_message_free_unpacked(m, NULL);
}
