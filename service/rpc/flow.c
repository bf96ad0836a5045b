/* The life of a policy-checked call (flow.h), top-down in the order a call
 * lives: arrival on a queue thread, the decision round in Redis, waits,
 * Twilio, the answer. Every state change goes through set_state (curl's
 * mstate); everything a call holds is given back by let_go. */
#include "rpc/flow.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/text.h"
#include "loop/loop.h"
#include "auth/callers.h"
#include "redis/message_status.h"
#include "redis/idempotency.h"
#include "redis/resolve_queue.h"
#include "redis/send_policy.h"
#include "redis/verify_limits.h"
#include "rpc/wire_strings.h"
#include "twilio/form.h"

/* Time kept back from the caller's deadline to answer it. */
#define ANSWER_MARGIN_MS 50
/* Polls of an idempotency key still in flight: first wait, growth, cap. */
#define POLL_FIRST_MS 20
#define POLL_CAP_MS 250
/* Polls of a key whose outcome is being resolved: Twilio's lists are read
 * about once a second (resolve/). */
#define RESOLVING_POLL_MS 500
/* Rounds run again after Redis lost the scripts, before giving up. */
#define MAX_RELOADS 4
#define RESPONSE_MAX 4096
/* Longest a Twilio request (with its retries) may take, deadline or not;
 * twilio-node's default timeout. */
#define TWILIO_MAX_MS 30000

/* What a decision round asks Redis (flow.need). */
enum { NEED_RECIPIENT = 1 << 0, NEED_ACCOUNT = 1 << 1, NEED_CLAIM = 1 << 2, NEED_QUOTA = 1 << 3 };
#define NEED_ALL(f)                                                                                \
    (NEED_RECIPIENT | NEED_ACCOUNT | ((f)->idem[0] ? NEED_CLAIM : 0) |                            \
     (caller_quota_applies((f)->caller, (f)->kind->spend) ? NEED_QUOTA : 0))

/* How a call lets go of what it holds (let_go). */
enum let_go {
    LET_GO_UNSENT,  /* nothing reached Twilio: everything goes back */
    LET_GO_REFUSED, /* Twilio saw it and did not act: all but the rate slot */
    LET_GO_SENT,    /* Twilio acted: only the lease frees */
    LET_GO_UNKNOWN, /* Twilio may have acted: like SENT, and the key is left to
                       resolve/ (its queue entry made due now) */
};

struct flow_ctx {
    char replica[17];        /* random per worker: ids unique across workers and replicas */
    atomic_ulong next_id;    /* any thread */
    /* Loop thread only. */
    struct flow *waiting;    /* flows in FLOW_WAITING */
    struct flow *sending;    /* flows in FLOW_SENDING */
    int shutting_down;
    atomic_ulong refusals[REASON_COUNT]; /* read by /metrics, on worker 0's loop */
};

static void run_round(struct flow *f);
static void send_to_twilio(struct flow *f);

/* --- the state machine's bookkeeping --- */

static const char *const state_names[] = {"PREPARED", "DECIDING",  "WAITING",
                                          "SENDING",  "RECORDING", "DONE"};

static int legal(enum flow_state from, enum flow_state to)
{
    switch (from) {
    case FLOW_PREPARED:
        return to == FLOW_DECIDING || to == FLOW_DONE;
    case FLOW_DECIDING:
        return to != FLOW_PREPARED && to != FLOW_RECORDING;
    case FLOW_WAITING:
        return to == FLOW_DECIDING || to == FLOW_SENDING || to == FLOW_DONE;
    case FLOW_SENDING:
        return to == FLOW_RECORDING || to == FLOW_DONE;
    case FLOW_RECORDING:
        return to == FLOW_DONE;
    case FLOW_DONE:
        break;
    }
    return 0;
}

/* Always change state here: it checks the move and logs it (debug). */
static void set_state(struct flow *f, enum flow_state to)
{
    if (!legal(f->state, to)) /* a bug: loud in every build, fatal in Debug */
        log_error("flow_state_illegal", "%s %s: %s -> %s", f->kind->rpc, f->id,
                  state_names[f->state], state_names[to]);
    assert(legal(f->state, to));
    log_debug("flow_state", "%s %s: %s -> %s", f->kind->rpc, f->id, state_names[f->state],
              state_names[to]);
    f->state = to;
}

static struct flow_ctx *ctx_of(const struct flow *f)
{
    return f->w->flows;
}

static void assert_loop(const struct flow *f)
{
    LOOP_ASSERT_OWNER(loop_base(f->w->loop));
    (void)f;
}

/* --- arrival, on a queue thread --- */

int flow_ctx_new(struct flow_ctx **out)
{
    struct flow_ctx *ctx = calloc(1, sizeof(*ctx));
    unsigned char r[8];

    if (!ctx)
        return CG_ENOMEM;
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
        snprintf(ctx->replica + 2 * i, 3, "%02x", r[i]);
    atomic_init(&ctx->next_id, 0);
    *out = ctx;
    return CG_OK;
}

void flow_ctx_free(struct flow_ctx **ctx)
{
    if (!*ctx)
        return;
    assert(!(*ctx)->waiting && !(*ctx)->sending);
    free(*ctx);
    *ctx = NULL;
}

static struct flow *flow_new(struct rpc_call *call, const struct flow_kind *kind)
{
    struct flow *f = calloc(1, sizeof(*f));
    if (!f) {
        rpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
        return NULL;
    }
    f->call = call;
    f->kind = kind;
    f->app = rpc_call_app(call);
    f->w = app_next_worker(f->app);
    f->caller = rpc_call_caller_info(call);
    f->state = FLOW_PREPARED;
    snprintf(f->id, sizeof(f->id), "%s-%lu", ctx_of(f)->replica,
             atomic_fetch_add(&ctx_of(f)->next_id, 1));
    return f;
}

static void flow_free(struct flow *f)
{
    assert(f->state == FLOW_PREPARED || f->state == FLOW_DONE);
    assert(f->held == 0);
    assert(!f->list_prev && !f->list_next);
    assert(ctx_of(f)->waiting != f && ctx_of(f)->sending != f);
    if (f->timer)
        event_free(f->timer);
    free(f->form);
    free(f->claim.repeat);
    free(f->reply_heap);
    free(f);
}

static void flow_task(struct loop_task *task)
{
    run_round(rpc_call_get_data(rpc_call_from_task(task)));
}

/* Queue thread: answers INVALID_ARGUMENT (and returns 1) when a string
 * field's bytes hold a NUL, which protobuf-c would have cut the string at. */
int flow_refuse_nul(struct rpc_call *call, const ProtobufCMessageDescriptor *desc,
                    const uint8_t *req, size_t len)
{
    char field[128], msg[200];
    int rc = wire_strings_nul(desc, req, len, field, sizeof(field));
    if (rc == 0)
        return 0;
    if (rc > 0)
        snprintf(msg, sizeof(msg), "%s: must not contain a NUL character", field);
    else
        snprintf(msg, sizeof(msg), "not a valid %s", desc->short_name);
    rpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, msg, NULL);
    return 1;
}

void flow_handle(struct rpc_call *call, const uint8_t *req, size_t len,
                 const struct flow_kind *kind, const ProtobufCMessageDescriptor *desc,
                 flow_prepare_fn *prepare)
{
    struct rpc_error err = {.code = GRPC_STATUS_INVALID_ARGUMENT, .retry_after_ms = -1};
    char msg[160];
    struct flow *f;

    LOOP_ASSERT_NOT_LOOP();
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, req);
    if (!m) {
        snprintf(msg, sizeof(msg), "not a valid %s", desc->short_name);
        rpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, msg, NULL);
        return;
    }
    if (flow_refuse_nul(call, desc, req, len))
        goto done;
    f = flow_new(call, kind);
    if (f) {
        err.msg = f->errmsg;
        if (prepare(f, m, req, len, &err)) {
            /* Refused before it was posted: nothing is held, no list. */
            rpc_call_fail(f->call, &err);
            flow_free(f);
        } else {
            f->need = NEED_ALL(f);
            rpc_call_set_data(f->call, f);
            rpc_call_task(f->call)->run = flow_task;
            loop_post(f->w->loop, rpc_call_task(f->call));
        }
    }
done:
    protobuf_c_message_free_unpacked(m, NULL);
}

void flow_set_idempotency(struct flow *f, const char *key, const uint8_t *req, size_t req_len)
{
    char caller[64];
    unsigned char digest[SHA256_DIGEST_LENGTH];

    unsigned char inner[SHA256_DIGEST_LENGTH + 64];
    size_t n;

    f->idem[0] = '\0';
    if (!key || !*key)
        return;
    /* The identity the callers file gave the call; without a callers file,
     * what the client says it is. */
    if (rpc_call_caller(f->call)[0])
        snprintf(caller, sizeof(caller), "%s", rpc_call_caller(f->call));
    else if (rpc_call_metadata(f->call, "commsgate-caller", caller, sizeof(caller)) <= 0)
        strcpy(caller, "default");
    idempotency_key(f->idem, sizeof(f->idem), caller, key);
    /* The whole request and its RPC: the same key with any other request
     * (another recipient, another RPC) is refused. */
    n = strlen(f->kind->rpc) + 1; /* RPC names are short: "SendWhatsApp" */
    assert(n <= sizeof(inner) - SHA256_DIGEST_LENGTH);
    memcpy(inner, f->kind->rpc, n);
    SHA256(req, req_len, inner + n);
    SHA256(inner, n + SHA256_DIGEST_LENGTH, digest);
    for (int i = 0; i < 16; i++)
        snprintf(f->fp + 2 * i, 3, "%02x", digest[i]);
}

int flow_status_callback(const struct flow *f, const char *path, char *out, size_t cap)
{
    char *key = f->idem[0] ? evhttp_encode_uri(f->idem) : NULL;
    int n = snprintf(out, cap, "%s%s%s%s", f->app->cfg->public_url, path, key ? "?cg=" : "",
                     key ? key : "");
    free(key);
    if (n >= 0 && (size_t)n < cap)
        return CG_OK;
    /* A key too long for the URL: the lists alone resolve it. */
    n = snprintf(out, cap, "%s%s", f->app->cfg->public_url, path);
    return n < 0 || (size_t)n >= cap ? CG_EINVAL : CG_OK;
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

/* --- letting go, and the ways out (used by every state below) --- */

/* The one place a call gives back what it holds. A settled claim is the
 * key's record now (settle), and a counted verification stays counted. */
static void let_go(struct flow *f, enum let_go how)
{
    struct worker *w = f->w;

    int sent = how == LET_GO_SENT || how == LET_GO_UNKNOWN;

    if (!sent && (f->held & FLOW_HOLD_CLAIM))
        idempotency_drop(w->idem, f->idem, f->id);
    if (how == LET_GO_UNKNOWN && (f->held & FLOW_HOLD_CLAIM)) {
        idempotency_unknown(w->idem, f->idem, f->id);
        if (f->kind->resolve_api) {
            resolve_queue_add(w->rqueue, f->idem, 0, 0);
            f->held &= ~(unsigned)FLOW_HOLD_QUEUED; /* the entry stays, due now */
        }
    }
    if (f->held & FLOW_HOLD_QUEUED)
        resolve_queue_done(w->rqueue, f->idem);
    if (!sent && (f->held & FLOW_HOLD_PLACE))
        verify_limits_give_back(w->redis, f->to, f->id);
    if (!sent && (f->held & FLOW_HOLD_QUOTA))
        caller_quota_give_back(w->redis, f->caller, f->kind->spend, f->id);
    if ((f->held & FLOW_HOLD_LEASE) && how == LET_GO_UNSENT) {
        /* The lease, and the rate slot if it is still the last one booked. */
        if (account_give(w->account, f->id, f->cost, f->acct.slot))
            log_warn("redis_write_skipped", "account lease %s not given back: Redis down",
                     f->id);
    } else if (f->held & FLOW_HOLD_LEASE) {
        /* Twilio saw the attempt: its place in the rate stays used. */
        account_release(w->account, f->id);
    }
    f->held = 0;
}

/* The ctx's list for flows in f's state: shutdown finds them there. */
static struct flow **list_of(struct flow *f)
{
    assert(f->state == FLOW_WAITING || f->state == FLOW_SENDING);
    return f->state == FLOW_WAITING ? &ctx_of(f)->waiting : &ctx_of(f)->sending;
}

static void list_add(struct flow *f)
{
    struct flow **head = list_of(f);
    f->list_prev = NULL;
    f->list_next = *head;
    if (*head)
        (*head)->list_prev = f;
    *head = f;
}

static void list_del(struct flow *f)
{
    struct flow **head = list_of(f);
    if (f->list_prev)
        f->list_prev->list_next = f->list_next;
    else if (*head == f)
        *head = f->list_next;
    if (f->list_next)
        f->list_next->list_prev = f->list_prev;
    f->list_prev = f->list_next = NULL;
}

/* Ends the call with an error; what it holds goes back as `how` says. */
static void count_refusal(struct flow *f, const struct rpc_error *err)
{
    if (reason_name(err->reason))
        atomic_fetch_add_explicit(&ctx_of(f)->refusals[err->reason], 1, memory_order_relaxed);
}

static void fail_call(struct flow *f, enum let_go how, const struct rpc_error *err)
{
    count_refusal(f, err);
    let_go(f, how);
    set_state(f, FLOW_DONE);
    rpc_call_fail(f->call, err);
    flow_free(f);
}

/* A refusal for one of commsgate's own reasons, status from the table. */
static void fail_for(struct flow *f, enum reason reason, const char *msg)
{
    struct rpc_error e = {.code = reason_status(reason),
                          .msg = msg,
                          .reason = reason,
                          .retry_after_ms = reason_retry_ms(reason)};
    fail_call(f, LET_GO_UNSENT, &e);
}

/* The client is gone: give everything back, answer nobody. */
static void abandon(struct flow *f)
{
    let_go(f, LET_GO_UNSENT);
    set_state(f, FLOW_DONE);
    rpc_call_release(f->call);
    flow_free(f);
}

/* --- DECIDING: one pipelined round trip to Redis --- */

static void decide(struct flow *f);

static void round_done(struct flow *f)
{
    assert(f->state == FLOW_DECIDING && f->pending > 0);
    if (--f->pending == 0)
        decide(f);
}

static void on_recipient(struct policy_result *res, struct policy_req *req)
{
    struct flow *f = req->data;
    f->verdict = *res;
    f->verdict.repeat = NULL; /* the recipient's scripts answer no repeats */
    round_done(f);
}

static void on_claim(struct policy_result *res, struct policy_req *req)
{
    struct flow *f = req->data;
    free(f->claim.repeat);
    f->claim = *res;
    res->repeat = NULL; /* the flow keeps it until it answers */
    round_done(f);
}

/* The key's record: claimed for as long as this call may still act, plus a
 * margin for its answer to reach Redis. */
static int ask_claim(struct flow *f)
{
    int64_t left = rpc_call_ms_left(f->call);
    if (left > 2 * TWILIO_MAX_MS)
        left = 2 * TWILIO_MAX_MS; /* waits, then the Twilio request */
    struct idempotency_send send = {.api = f->kind->resolve_api,
                                    .form = f->form,
                                    .form_len = f->form_len};
    f->claim_req.done = on_claim;
    f->claim_req.data = f;
    f->lease_ms = left + IDEMPOTENCY_LEASE_MARGIN_MS;
    return idempotency_claim(f->w->idem, f->idem, f->fp, f->id, f->lease_ms, &send,
                             &f->claim_req);
}

static void on_claim_durable(struct redis_waiter *w, int ok)
{
    struct flow *f = (struct flow *)((char *)w - offsetof(struct flow, claim_wait));
    f->claim_durable = ok;
    round_done(f);
}

static void on_quota(struct policy_result *res, struct policy_req *req)
{
    struct flow *f = req->data;
    f->quota = *res;
    f->quota.repeat = NULL;
    round_done(f);
}

static int ask_quota(struct flow *f)
{
    f->quota_req.done = on_quota;
    f->quota_req.data = f;
    return caller_quota_take(f->w->redis, f->caller, f->kind->spend, f->id, &f->quota_req);
}

static void on_account(struct account_req *req, enum account_result res, int64_t ms)
{
    struct flow *f = req->data;
    f->acct_res = res;
    f->acct_ms = ms;
    round_done(f);
}

static int ask_recipient(struct flow *f)
{
    struct worker *w = f->w;
    struct send_policy_args a = {.to = f->to,
                                 .check_optout = f->check_optout,
                                 .needs_window = f->needs_window};
    f->policy.done = on_recipient;
    f->policy.data = f;
    switch (f->kind->policy) {
    case FLOW_POLICY_SEND:
        return send_policy_check(w->redis, f->app->cfg, &a, &f->policy);
    case FLOW_POLICY_VERIFY_START:
        return verify_limits_start(w->redis, f->app->cfg, f->to, f->id, &f->policy);
    case FLOW_POLICY_VERIFY_CHECK:
        return verify_limits_check(w->redis, f->app->cfg, f->to, f->id, &f->policy);
    }
    return CG_EINVAL;
}

/* The account take for this round: a lease for the whole deadline (at most
 * 2 min), and a rate slot no further ahead than the deadline allows. */
static void ask_account(struct flow *f)
{
    int64_t left = rpc_call_ms_left(f->call);
    int64_t wait = left - ANSWER_MARGIN_MS - 1;
    f->acct.id = f->id;
    f->acct.cost = f->cost;
    f->acct.lease_ms = left > 120000 ? 120000 : left + 1000;
    f->acct.max_wait_ms = wait < 0 ? 0 : wait > TWILIO_MAX_MS ? TWILIO_MAX_MS : wait;
    f->acct.done = on_account;
    f->acct.data = f;
    account_take(f->w->account, &f->acct);
}

/* Loop thread: sends whatever f->need asks, in one pipeline. */
static void run_round(struct flow *f)
{
    assert_loop(f);
    if (rpc_call_is_cancelled(f->call)) {
        abandon(f);
        return;
    }
    if (!f->need) {
        send_to_twilio(f);
        return;
    }
    set_state(f, FLOW_DECIDING);
    f->verdict.verdict = POLICY_GO;
    f->claim.verdict = POLICY_GO;
    f->quota.verdict = POLICY_GO;
    f->acct_res = ACCOUNT_OK;
    f->pending = !!(f->need & NEED_RECIPIENT) + !!(f->need & NEED_ACCOUNT) +
                 !!(f->need & NEED_CLAIM) + !!(f->need & NEED_QUOTA);
    /* The key's record first: a repeat is answered whatever else says. */
    if ((f->need & NEED_CLAIM) && ask_claim(f)) {
        fail_for(f, REASON_REDIS_UNAVAILABLE, "Redis is unreachable; nothing was sent");
        return;
    }
    /* A claim only the master has would be lost with it in a failover, and
     * a repeat of the key would then send again: with replicas to wait for,
     * Twilio is called only once they have it (WAIT, pipelined behind). */
    if ((f->need & NEED_CLAIM) && f->app->cfg->redis_wait_replicas > 0) {
        f->claim_durable = 0;
        f->claim_wait.done = on_claim_durable;
        f->pending++;
        redis_after_writes(f->w->redis, &f->claim_wait);
    }
    if ((f->need & NEED_RECIPIENT) && ask_recipient(f)) {
        if (!(f->need & NEED_CLAIM)) {
            fail_for(f, REASON_REDIS_UNAVAILABLE, "Redis is unreachable; nothing was sent");
            return;
        }
        /* The claim just sent answers later; decide drops it then. */
        f->verdict.verdict = POLICY_LOST;
        f->pending--;
    }
    /* The caller's quotas, in the same pipeline (their own slot's script).
     * The account's take, last, always answers later, so a quota that
     * cannot be asked is decided with the rest. */
    if ((f->need & NEED_QUOTA) && ask_quota(f)) {
        f->quota.verdict = POLICY_LOST;
        f->pending--;
    }
    if (f->need & NEED_ACCOUNT)
        ask_account(f);
}

/* --- WAITING: a timer within the deadline --- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct flow *f = arg;
    list_del(f);
    run_round(f);
}

/* Runs f->need again (or, with nothing needed, sends) after `ms`, if the
 * deadline allows; -1 when it does not, or at shutdown. */
static int wait_for(struct flow *f, int64_t ms)
{
    struct flow_ctx *ctx = ctx_of(f);
    if (ctx->shutting_down || ms + ANSWER_MARGIN_MS >= rpc_call_ms_left(f->call))
        return -1;
    if (!f->timer)
        f->timer = evtimer_new(loop_base(f->w->loop), on_timer, f);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    if (!f->timer || evtimer_add(f->timer, &tv))
        return -1;
    set_state(f, FLOW_WAITING);
    list_add(f);
    return 0;
}

/* --- DECIDING, continued: both replies are in --- */

/* The caller's message for a refusal of the recipient's script. */
static void refusal_message(struct flow *f, const struct policy_result *v, struct rpc_error *e)
{
    const struct config *cfg = f->app->cfg;
    long long secs = (v->ms + 999) / 1000;
    char when[32], who[64];
    text_mask_recipient(f->to, who, sizeof(who)); /* the caller's logs keep these */

    *e = (struct rpc_error){.code = reason_status(v->reason), .reason = v->reason};
    e->msg = f->errmsg;
    e->retry_after_ms = -1;
    switch (v->reason) {
    case REASON_OPTED_OUT:
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "%s has opted out (replied STOP); nothing is sent until they reply START",
                 who);
        break;
    case REASON_WHATSAPP_WINDOW_CLOSED:
        if (v->ms > 0) {
            time_t t = (time_t)(v->ms / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
            snprintf(f->errmsg, sizeof(f->errmsg),
                     "the WhatsApp 24-hour customer-service window with %s closed at %s; "
                     "outside it only a template (content_sid) can be sent",
                     who, when);
        } else {
            snprintf(f->errmsg, sizeof(f->errmsg),
                     "the WhatsApp 24-hour customer-service window with %s is not open (no "
                     "message from them); outside it only a template (content_sid) can be sent",
                     who);
        }
        break;
    case REASON_IDEMPOTENCY_KEY_REUSED:
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "idempotency_key was already used for a different request (another "
                 "recipient, content or RPC)");
        break;
    case REASON_OUTCOME_UNKNOWN:
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "outcome unknown: the request first made with this idempotency_key was "
                 "interrupted before its outcome was recorded (its replica stopped, or lost "
                 "Redis); Twilio may have accepted it, so it is not sent again");
        break;
    case REASON_VERIFY_COOLDOWN:
        e->retry_after_ms = v->ms;
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "a code was sent to %s less than %d s ago; retry in %lld s", who,
                 cfg->verify_cooldown_s, secs);
        break;
    case REASON_VERIFY_SEND_LIMIT:
        e->retry_after_ms = v->ms;
        snprintf(f->errmsg, sizeof(f->errmsg), "at most %d codes per %d s to %s; retry in %lld s",
                 cfg->verify_max_sends, cfg->verify_send_window_s, who, secs);
        break;
    case REASON_VERIFY_CHECK_LIMIT:
        e->retry_after_ms = v->ms;
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "at most %d checks per %d s for %s; retry in %lld s", cfg->verify_max_checks,
                 cfg->verify_check_window_s, who, secs);
        break;
    default:
        e->code = GRPC_STATUS_INTERNAL;
        e->reason = REASON_INTERNAL;
        snprintf(f->errmsg, sizeof(f->errmsg), "unexpected policy answer");
        break;
    }
}

/* An idempotent repeat: the first answer to the key, again. */
static void answer_repeat(struct flow *f)
{
    const struct policy_outcome *o = f->claim.repeat;
    let_go(f, LET_GO_UNSENT); /* this round's account take */
    set_state(f, FLOW_DONE);
    if (o->code == GRPC_STATUS_OK) {
        rpc_call_finish_packed(f->call, o->body, o->body_len);
    } else {
        struct rpc_error e = {.code = (grpc_status_code)o->code,
                              .msg = o->msg,
                              .reason = o->twilio_code ? REASON_TWILIO_ERROR
                                                       : REASON_OUTCOME_UNKNOWN,
                              .twilio_code = o->twilio_code,
                              .retry_after_ms = -1};
        rpc_call_fail(f->call, &e);
    }
    flow_free(f);
}

/* Ends the call with the family's packed response, or, when it could not
 * pack one (len 0), with e. What it held is already let go. */
static void answer_packed(struct flow *f, const uint8_t *buf, size_t len,
                          const struct rpc_error *e)
{
    set_state(f, FLOW_DONE);
    if (len)
        rpc_call_finish_packed(f->call, buf, len);
    else
        rpc_call_fail(f->call, e);
    flow_free(f);
}

/* A repeat of a key whose unknown outcome was resolved: Twilio has it, so
 * this request (the same, by its fingerprint) answers OK with its SID. */
static void answer_found(struct flow *f)
{
    const struct policy_outcome *o = f->claim.repeat;
    struct twilio_result res = {.outcome = TWILIO_OK,
                                .message = "",
                                .sid = o->sid,
                                .status = o->status[0] ? o->status : NULL,
                                .retry_after_ms = -1};
    struct rpc_error e = {.retry_after_ms = -1};
    uint8_t buf[RESPONSE_MAX];
    size_t len = f->kind->respond(f, &res, buf, sizeof(buf), &e);

    let_go(f, LET_GO_UNSENT); /* this round's account take */
    answer_packed(f, buf, len, &e);
}

/* A wait refused because commsgate is stopping is said so, not blamed on
 * the deadline or the budget. Returns 1 if it answered. */
static int refused_for_shutdown(struct flow *f)
{
    if (!ctx_of(f)->shutting_down)
        return 0;
    fail_for(f, REASON_SHUTTING_DOWN, "commsgate is shutting down; nothing was sent");
    return 1;
}



static void decide(struct flow *f)
{
    int asked_recipient = f->need & NEED_RECIPIENT, asked_account = f->need & NEED_ACCOUNT;
    int asked_claim = f->need & NEED_CLAIM, asked_quota = f->need & NEED_QUOTA;
    enum policy_verdict v = f->verdict.verdict, c = f->claim.verdict, q = f->quota.verdict;
    struct rpc_error e = {.retry_after_ms = -1};

    /* First take what this round got, so every way out below lets go of
     * it: the key's claim, a verification place, a lease (and slot). */
    if (asked_claim && c == POLICY_GO)
        f->held |= FLOW_HOLD_CLAIM;
    if (asked_recipient && v == POLICY_GO && f->kind->policy == FLOW_POLICY_VERIFY_START)
        f->held |= FLOW_HOLD_PLACE;
    /* A lost reply may have reserved its places: give back as if it had. */
    if (asked_quota && (q == POLICY_GO || q == POLICY_LOST))
        f->held |= FLOW_HOLD_QUOTA;
    if (asked_account && f->acct_res == ACCOUNT_OK) {
        f->held |= FLOW_HOLD_LEASE;
        if (f->cost > 0)
            f->held |= FLOW_HOLD_SLOT;
    }
    /* A reply lost on the way leaves unknown whether its script ran (Redis
     * may still execute what it had read): give back as if it had; each
     * give-back is a no-op for what was never taken, and a claim is dropped
     * only by its owner, when Redis is back if need be. */
    if (asked_claim && c == POLICY_LOST)
        f->held |= FLOW_HOLD_CLAIM;
    if (asked_recipient && v == POLICY_LOST && f->kind->policy == FLOW_POLICY_VERIFY_START)
        f->held |= FLOW_HOLD_PLACE;
    if (asked_account && f->acct_res == ACCOUNT_LOST) {
        snprintf(f->acct.slot, sizeof(f->acct.slot), "0"); /* no slot is known */
        f->held |= FLOW_HOLD_LEASE;
    }

    if (v == POLICY_LOST || c == POLICY_LOST || q == POLICY_LOST || f->acct_res == ACCOUNT_LOST) {
        fail_for(f, REASON_REDIS_UNAVAILABLE,
                 "Redis connection lost during the policy check; nothing was sent");
        return;
    }
    if (v == POLICY_NOSCRIPT || c == POLICY_NOSCRIPT || q == POLICY_NOSCRIPT ||
        f->acct_res == ACCOUNT_NOSCRIPT) {
        /* Redis lost the scripts (flush, failover): let go of this round,
         * reload, and run the whole decision again. */
        if (++f->reloads > MAX_RELOADS) {
            fail_for(f, REASON_REDIS_UNAVAILABLE, "Redis keeps losing the policy scripts");
            return;
        }
        let_go(f, LET_GO_UNSENT);
        f->need = NEED_ALL(f);
        policy_reload(f->w->redis);
        run_round(f);
        return;
    }
    if (asked_claim && c == POLICY_GO && f->app->cfg->redis_wait_replicas > 0 &&
        !f->claim_durable) {
        fail_for(f, REASON_REDIS_UNAVAILABLE,
                 "the idempotency claim did not reach COMMSGATE_REDIS_WAIT_REPLICAS replicas "
                 "in time; nothing was sent");
        return;
    }
    if (asked_claim) {
        switch (c) {
        case POLICY_GO:
            f->need &= ~(unsigned)NEED_CLAIM;
            break;
        case POLICY_REFUSE: /* another request, or its holder stopped */
            refusal_message(f, &f->claim, &e);
            fail_call(f, LET_GO_UNSENT, &e);
            return;
        case POLICY_REPEAT:
            answer_repeat(f);
            return;
        case POLICY_FOUND:
            answer_found(f);
            return;
        case POLICY_RESOLVING:
            /* Resolution survives the replica that started it: this makes
             * sure the key is queued (an entry already there stays); once
             * per call, not per poll. */
            if (f->polls++ == 0)
                resolve_queue_add(f->w->rqueue, f->idem, 0, 1);
            let_go(f, LET_GO_UNSENT);
            f->need = NEED_ALL(f);
            if (wait_for(f, RESOLVING_POLL_MS) && !refused_for_shutdown(f))
                fail_for(f, REASON_OUTCOME_RESOLVING,
                         "the request first made with this idempotency_key may have reached "
                         "Twilio and commsgate is asking Twilio whether it did; nothing is "
                         "sent meanwhile; repeat with the same key to get its outcome");
            return;
        case POLICY_IN_FLIGHT: {
            int64_t wait = POLL_FIRST_MS << (f->polls < 4 ? f->polls : 4);
            f->polls++;
            let_go(f, LET_GO_UNSENT); /* the account take waits with us */
            f->need = NEED_ALL(f);
            if (wait_for(f, wait > POLL_CAP_MS ? POLL_CAP_MS : wait) && !refused_for_shutdown(f))
                fail_for(f, REASON_IDEMPOTENCY_IN_FLIGHT,
                         "a request with this idempotency_key is still in flight; retry with "
                         "the same key to get its outcome");
            return;
        }
        case POLICY_LOST:
        case POLICY_NOSCRIPT:
            break; /* handled above */
        }
    }
    if (asked_recipient) {
        if (v == POLICY_REFUSE) {
            refusal_message(f, &f->verdict, &e);
            fail_call(f, LET_GO_UNSENT, &e); /* the claim goes too: nothing sent */
            return;
        }
        f->need &= ~(unsigned)NEED_RECIPIENT;
    }
    if (asked_quota) {
        if (q == POLICY_REFUSE) {
            long long secs = (f->quota.ms + 999) / 1000;
            snprintf(f->errmsg, sizeof(f->errmsg),
                     "caller %s: its quota of %ld %s is spent; retry in %lld s",
                     f->caller->name, f->caller->quota[f->quota.which],
                     caller_quota_name(f->quota.which), secs);
            e = (struct rpc_error){.code = reason_status(REASON_CALLER_QUOTA),
                                   .msg = f->errmsg,
                                   .reason = REASON_CALLER_QUOTA,
                                   .retry_after_ms = f->quota.ms};
            fail_call(f, LET_GO_UNSENT, &e);
            return;
        }
        f->need &= ~(unsigned)NEED_QUOTA;
    }
    if (asked_account) {
        if (f->acct_res != ACCOUNT_OK) { /* ACCOUNT_RATE or ACCOUNT_BUSY */
            f->need = NEED_ACCOUNT;
            if (wait_for(f, f->acct_ms) == 0 || refused_for_shutdown(f))
                return;
            snprintf(f->errmsg, sizeof(f->errmsg),
                     "account send budget exhausted (%d segments/s, %d requests in flight); "
                     "retry after %lld ms",
                     f->app->cfg->send_rate, f->app->cfg->twilio_concurrency,
                     (long long)f->acct_ms);
            e = (struct rpc_error){.code = reason_status(REASON_ACCOUNT_RATE_LIMITED),
                                   .msg = f->errmsg,
                                   .reason = REASON_ACCOUNT_RATE_LIMITED,
                                   .retry_after_ms = f->acct_ms};
            fail_call(f, LET_GO_UNSENT, &e);
            return;
        }
        f->need &= ~(unsigned)NEED_ACCOUNT;
        if (f->acct_ms > 0) {
            /* Our rate slot is ahead: wait for it here, without asking again. */
            if (wait_for(f, f->acct_ms) == 0 || refused_for_shutdown(f))
                return;
            fail_for(f, REASON_DEADLINE,
                     "deadline reached before the account's send slot; nothing was sent");
            return;
        }
    }
    send_to_twilio(f);
}

/* --- SENDING: Twilio, and the answer --- */

static void on_twilio(const struct twilio_result *res, void *data);

static void send_to_twilio(struct flow *f)
{
    int64_t left = rpc_call_ms_left(f->call) - ANSWER_MARGIN_MS;

    assert(f->need == 0);
    if (left > TWILIO_MAX_MS)
        left = TWILIO_MAX_MS; /* a caller without a deadline still gets an answer */
    if (left <= 0) {
        fail_for(f, REASON_DEADLINE, "deadline reached before Twilio was called");
        return;
    }
    if (refused_for_shutdown(f))
        return;
    if (twilio_request(f->w->twilio, f->kind->api, f->form, f->form_len, left, on_twilio, f,
                       &f->twilio)) {
        fail_for(f, REASON_INTERNAL, "cannot start the Twilio request");
        return;
    }
    if (f->caller)
        twilio_req_set_caller(f->twilio, rpc_call_caller(f->call));
    /* Should this replica die with the request out, its claim's entry falls
     * due when the lease ends and any replica resolves it. */
    if ((f->held & FLOW_HOLD_CLAIM) && f->kind->resolve_api) {
        resolve_queue_add(f->w->rqueue, f->idem, f->lease_ms, 0);
        f->held |= FLOW_HOLD_QUEUED;
    }
    set_state(f, FLOW_SENDING);
    list_add(f);
}

/* What Twilio's refusal tells the caller, and what it changes here: data
 * from Twilio's error table, for the actions this family honours. Returns
 * whether it wrote to Redis. */
static int twilio_refusal(struct flow *f, const struct twilio_result *res, struct rpc_error *e)
{
    const struct twilio_error_info *info = twilio_error_for(res->code, res->http_status);
    unsigned act = info ? info->action : TWILIO_ACTION_NONE;
    char who[64];

    /* Twilio's own text can echo what it was sent (a number, a body): the
     * caller gets the table's words, or where to read about the code. */
    if (info && info->code == res->code)
        snprintf(f->errmsg, sizeof(f->errmsg), "Twilio refused (%d): %s", res->code,
                 info->message);
    else if (res->code)
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "Twilio refused (%d): see https://www.twilio.com/docs/errors/%d", res->code,
                 res->code);
    else
        snprintf(f->errmsg, sizeof(f->errmsg), "Twilio refused: HTTP %ld", res->http_status);
    e->code = info ? info->status : twilio_error_status_for_http(res->http_status);
    e->msg = f->errmsg;
    e->reason = REASON_TWILIO_ERROR;
    e->twilio_code = res->code;
    if (!info || (act && !(act & f->kind->twilio_actions)))
        return 0;
    e->reason = info->reason;
    e->retry_after_ms = info->retry_after_ms;
    if (act == TWILIO_ACTION_OPT_OUT) {
        send_policy_opt_out(f->w->redis, f->app->cfg, f->to);
        return 1;
    }
    if (act == TWILIO_ACTION_CLOSE_WINDOW) {
        send_policy_close_window(f->w->redis, f->to);
        return 1;
    }
    if (act == TWILIO_ACTION_NOT_FOUND && f->kind->not_found_fmt)
        snprintf(f->errmsg, sizeof(f->errmsg), f->kind->not_found_fmt,
                 text_mask_recipient(f->to, who, sizeof(who)));
    return 0;
}

/* Twilio acted: the key's record keeps this answer. */
static void settle(struct flow *f, const struct policy_outcome *o)
{
    if (f->held & FLOW_HOLD_CLAIM)
        idempotency_settle(f->w->idem, f->idem, o);
    let_go(f, LET_GO_SENT);
}

/* Twilio may have acted and no usable answer came: never give back, never
 * let a repeat of the key send again. With a key, its record is resolved
 * by asking Twilio (resolve/), and a repeat learns the outcome; one that
 * cannot be resolved keeps this answer. */
static void answer_unknown(struct flow *f, const char *why)
{
    int resolves = (f->held & FLOW_HOLD_CLAIM) && f->kind->resolve_api;
    snprintf(f->errmsg, sizeof(f->errmsg),
             "outcome unknown: Twilio may have accepted the request (%s); %s", why,
             resolves ? "repeat with the same idempotency_key to learn its outcome once "
                        "commsgate has asked Twilio"
                      : "do not retry without an idempotency_key");
    struct rpc_error e = {.code = reason_status(REASON_OUTCOME_UNKNOWN),
                          .msg = f->errmsg,
                          .reason = REASON_OUTCOME_UNKNOWN,
                          .retry_after_ms = -1};
    struct policy_outcome o = {.code = (int)e.code, .msg = f->errmsg};
    if (resolves)
        let_go(f, LET_GO_UNKNOWN);
    else
        settle(f, &o);
    set_state(f, FLOW_DONE);
    rpc_call_fail(f->call, &e);
    flow_free(f);
}

static void on_recorded(struct redis_waiter *w, int ok)
{
    struct flow *f = (struct flow *)((char *)w - offsetof(struct flow, recorded));
    assert_loop(f);
    if (!ok)
        log_warn("flow_record_unconfirmed", "%s %s: answered without Redis confirming what "
                 "Twilio's answer changed (the connection was lost)", f->kind->rpc, f->id);
    answer_packed(f, f->reply_heap ? f->reply_heap : f->reply_inline, f->reply_len,
                  &f->reply_err);
}

/* Twilio answered and that answer was written to Redis on this loop's
 * connection: the caller hears it once Redis has it. Its next call may go
 * to another loop or replica and must find the opt-out, the message's
 * status or the key's record. buf and e are copied. */
static void answer_recorded(struct flow *f, const uint8_t *buf, size_t len,
                            const struct rpc_error *e)
{
    uint8_t *copy = f->reply_inline;
    if (len > sizeof(f->reply_inline) && !(copy = f->reply_heap = malloc(len))) {
        answer_packed(f, buf, len, e); /* without the wait, rather than not at all */
        return;
    }
    if (len)
        memcpy(copy, buf, len);
    f->reply_len = len;
    f->reply_err = *e;
    set_state(f, FLOW_RECORDING);
    f->recorded.done = on_recorded;
    redis_after_writes(f->w->redis, &f->recorded);
}

static void on_twilio(const struct twilio_result *res, void *data)
{
    struct flow *f = data;
    struct rpc_error e = {.retry_after_ms = -1};
    uint8_t buf[RESPONSE_MAX];
    int wrote = 0;

    assert(f->state == FLOW_SENDING);
    list_del(f);
    f->twilio = NULL; /* freed by twilio.c once this returns */
    switch (res->outcome) {
    case TWILIO_OK: {
        size_t len = f->kind->respond(f, res, buf, sizeof(buf), &e);
        wrote = (f->held & FLOW_HOLD_CLAIM) != 0;
        if (f->kind->tracks_message && res->sid) {
            message_status_first(f->w->redis, res->sid, res->status ? res->status : "queued");
            wrote = 1;
        }
        struct policy_outcome o = {.code = len ? GRPC_STATUS_OK : (int)e.code,
                                   .body = len ? buf : NULL,
                                   .body_len = len,
                                   .msg = len ? NULL : (char *)e.msg,
                                   .twilio_code = len ? 0 : e.twilio_code};
        settle(f, &o);
        if (wrote)
            answer_recorded(f, buf, len, &e);
        else
            answer_packed(f, buf, len, &e);
        return;
    }
    case TWILIO_UNKNOWN:
        answer_unknown(f, res->message);
        return;
    case TWILIO_REFUSED:
        wrote = twilio_refusal(f, res, &e);
        break;
    case TWILIO_FAILED:
        if (res->http_status) {
            /* Twilio kept refusing (429 and the like) past the deadline:
             * its refusal, with the wait the next attempt needed. */
            wrote = twilio_refusal(f, res, &e);
            if (e.retry_after_ms < 0)
                e.retry_after_ms = res->retry_after_ms;
            break;
        }
        snprintf(f->errmsg, sizeof(f->errmsg), "Twilio could not be reached, nothing was sent: %s",
                 res->message);
        e.code = reason_status(REASON_TWILIO_UNREACHABLE);
        e.msg = f->errmsg;
        e.reason = REASON_TWILIO_UNREACHABLE;
        e.twilio_code = res->code;
        break;
    }
    /* Refused or failed: Twilio did not act, so what the policy reserved
     * goes back and a repeat of the key may try again. An opt-out, a closed
     * window or the key given back is written first. */
    if (!wrote && !(f->held & FLOW_HOLD_CLAIM)) {
        fail_call(f, LET_GO_REFUSED, &e);
        return;
    }
    count_refusal(f, &e);
    let_go(f, LET_GO_REFUSED);
    answer_recorded(f, NULL, 0, &e);
}

/* --- shutdown --- */

void flow_shutdown(struct flow_ctx *ctx)
{
    ctx->shutting_down = 1;
    while (ctx->waiting) {
        struct flow *f = ctx->waiting;
        assert_loop(f);
        list_del(f);
        event_del(f->timer);
        fail_for(f, REASON_SHUTTING_DOWN, "commsgate is shutting down; nothing was sent");
    }
    while (ctx->sending) {
        struct flow *f = ctx->sending;
        int on_wire = twilio_on_wire(f->twilio);
        assert_loop(f);
        list_del(f);
        twilio_cancel(f->twilio); /* its done is not called */
        f->twilio = NULL;
        if (on_wire) {
            answer_unknown(f, "commsgate shut down while Twilio had it");
        } else {
            /* Between attempts: none so far reached Twilio, or Twilio
             * refused it (a 429 waiting for its retry). */
            struct rpc_error e = {.code = reason_status(REASON_SHUTTING_DOWN),
                                  .msg = "commsgate is shutting down; nothing was sent",
                                  .reason = REASON_SHUTTING_DOWN,
                                  .retry_after_ms = -1};
            fail_call(f, LET_GO_REFUSED, &e);
        }
    }
}

/* --- metrics --- */

void flow_metrics(struct flow_ctx *const *ctx, int n, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP commsgate_policy_refusals_total Calls refused by policy or "
                             "Twilio, by reason.\n# TYPE commsgate_policy_refusals_total counter\n");
    for (int r = 0; r < REASON_COUNT; r++) {
        unsigned long sum = 0;
        for (int i = 0; i < n; i++)
            sum += atomic_load_explicit(&ctx[i]->refusals[r], memory_order_relaxed);
        if (sum)
            evbuffer_add_printf(out, "commsgate_policy_refusals_total{reason=\"%s\"} %lu\n",
                                reason_name(r), sum);
    }
}
