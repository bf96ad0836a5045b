/* The life of every policy-checked RPC (SendSMS, SendWhatsApp, PlaceCall,
 * StartVerification, CheckVerification), from the queue thread that
 * receives it to the loop thread that answers it, as one state machine
 * (docs/ARCHITECTURE.md draws it):
 *
 *   PREPARED  queue thread: unpacked, validated, Twilio form built; posted
 *   DECIDING  loop: the recipient's script and the account take, pipelined
 *             in one Redis round trip
 *   WAITING   loop: on a timer, for an idempotency key in flight elsewhere,
 *             for the account budget, or for its reserved rate slot
 *   SENDING   loop: the Twilio request (with its retries) in flight
 *   RECORDING loop: what Twilio's answer changed (an opt-out, the message's
 *             first status, the key's record) written; the caller is
 *             answered once Redis has it, so its next call, on any loop or
 *             replica, finds it
 *   DONE      answered
 *
 * Each RPC family supplies a flow_kind (data: which policy, which Twilio
 * actions apply, how to read Twilio's answer); the flow owns the call from
 * flow_start until it answers. */
#ifndef COMMSGATE_RPC_FLOW_H
#define COMMSGATE_RPC_FLOW_H

#include <stddef.h>
#include <stdint.h>

#include "redis/account.h"
#include "redis/caller_quota.h"
#include "redis/keys.h"
#include "redis/policy.h"
#include "redis/redis.h"
#include "rpc/server.h"
#include "twilio/errors.h"
#include "twilio/twilio.h"

struct app;
struct worker;
struct flow;
struct flow_ctx;
struct form;

/* The recipient's script a family's calls go through. */
enum flow_policy {
    FLOW_POLICY_SEND,         /* send_policy.c: opt-out, window, idempotency */
    FLOW_POLICY_VERIFY_START, /* verify_limits.c: sends per number, cool-down */
    FLOW_POLICY_VERIFY_CHECK, /* verify_limits.c: checks per number */
};

struct flow_kind {
    const char *rpc; /* "SendSMS": logs, metrics, idempotency scope */
    enum twilio_api api;
    enum flow_policy policy;
    /* Twilio answered OK: packs the response into buf (cap bytes) and returns
     * its length, or 0 with *err filled to refuse after all. */
    size_t (*respond)(struct flow *f, const struct twilio_result *res, uint8_t *buf, size_t cap,
                      struct rpc_error *err);
    /* The actions of Twilio's error table this family honours (a 21610
     * opts an SMS recipient out; a WhatsApp 21610 is Meta's to handle). */
    unsigned twilio_actions;
    /* With TWILIO_ACTION_NOT_FOUND: the caller's message, a format taking
     * the recipient. */
    const char *not_found_fmt;
    /* Sends a message: its accepted status is recorded for GetMessage. */
    int tracks_message;
    /* What a call spends of its caller's quotas (callers file). */
    enum caller_spend spend;
    /* The Twilio list an unknown outcome is resolved from (resolve/):
     * "Messages", "Calls" or "Attempts" (Verify); NULL if it cannot be. */
    const char *resolve_api;
};

enum flow_state {
    FLOW_PREPARED,
    FLOW_DECIDING,
    FLOW_WAITING,
    FLOW_SENDING,
    FLOW_RECORDING, /* what Twilio's answer changed is on its way to Redis */
    FLOW_DONE
};

/* What a call holds in Redis, each given back by let_go() only. */
enum flow_hold {
    FLOW_HOLD_CLAIM = 1 << 0, /* its idempotency key, claimed by send.lua */
    FLOW_HOLD_PLACE = 1 << 1, /* a place in the verification send limit */
    FLOW_HOLD_LEASE = 1 << 2, /* a place among the account's requests in flight */
    FLOW_HOLD_SLOT = 1 << 3,  /* a slot in the account's send rate */
    FLOW_HOLD_QUEUED = 1 << 4, /* an entry in the resolve queue, due when its claim's
                                  lease ends: a replica that dies mid-send leaves it */
    FLOW_HOLD_QUOTA = 1 << 5,  /* places in its caller's quotas (caller_quota.lua) */
};

struct flow {
    /* Filled by the family's prepare, on the queue thread. */
    const struct flow_kind *kind;
    struct rpc_call *call;
    struct app *app;
    struct worker *w;        /* the loop the call stays on, from arrival to answer */
    const struct caller *caller; /* its entry in the callers file; NULL without one */
    char to[320];            /* the recipient as the keys name it */
    char *form;              /* the Twilio request body; owned */
    size_t form_len;
    int cost;                /* segments charged to the account rate; 0: concurrency only */
    int check_optout;        /* FLOW_POLICY_SEND: refuse opted-out recipients */
    int needs_window;        /* FLOW_POLICY_SEND: free-form WhatsApp */
    char idem[KEYS_MAX];     /* the key's record (redis/idempotency.c); "" without a key */
    char fp[33];             /* request fingerprint, for the idempotency record */
    char id[40];             /* unique per request: lease and reservation id */
    char errmsg[640];        /* the caller's message, when refused */
    /* Family-specific facts the handler worked out (segments, template...). */
    union {
        struct {
            unsigned segments;
            int encoding;
        } sms;
        int is_template;
        int channel;
    } u;

    /* Private to flow.c, loop thread only once posted. */
    enum flow_state state;
    unsigned held;           /* enum flow_hold bits */
    unsigned need;           /* what the next decision round asks Redis */
    int pending;             /* replies still due in this round */
    int reloads, polls;
    int64_t lease_ms;        /* the claim's lease, as last asked */
    struct policy_req policy, claim_req, quota_req;
    struct policy_result quota;     /* this round's answer from the caller's quotas */
    struct policy_result verdict;   /* this round's recipient answer */
    struct policy_result claim;     /* this round's answer from the key's record */
    struct account_req acct;
    enum account_result acct_res;
    int64_t acct_ms;
    struct event *timer;
    struct twilio_req *twilio;          /* SENDING: the request, for shutdown */
    struct redis_waiter recorded;       /* RECORDING: Redis has the writes */
    /* COMMSGATE_REDIS_WAIT_REPLICAS: the claim reached that many replicas
     * (a WAIT behind the claim, in the same pipeline). */
    struct redis_waiter claim_wait;
    int claim_durable;
    /* RECORDING: the packed answer. Every family's fits the flow (a SID, a
     * status, a few numbers: under 100 bytes), so no allocation per send;
     * a larger one would be heap (reply_heap, owned). */
    uint8_t reply_inline[128];
    uint8_t *reply_heap;
    size_t reply_len;                   /* 0: answer reply_err instead */
    struct rpc_error reply_err;
    struct flow *list_prev, *list_next; /* on the ctx's list of its state, WAITING or SENDING */
};

/* Queue thread: answers INVALID_ARGUMENT and returns 1 when one of the
 * request's string fields holds a NUL (rpc/wire_strings.h); else 0. */
int flow_refuse_nul(struct rpc_call *call, const ProtobufCMessageDescriptor *desc,
                    const uint8_t *req, size_t len);

/* The shared state of one worker's flows (app.h), owned by the app: the
 * worker's id prefix, the lists of waiting and sending flows, shutdown, and
 * the refusal counters. */
int flow_ctx_new(struct flow_ctx **out);
/* Clears *ctx; NULL is a no-op. After flow_shutdown. */
void flow_ctx_free(struct flow_ctx **ctx);

/* Fills the flow from the unpacked request (to, form, cost, idem, u...) on
 * the queue thread; returns 0, or -1 with err filled (err->msg may point at
 * f->errmsg). `raw` is the request as received, for the idempotency
 * fingerprint. */
typedef int flow_prepare_fn(struct flow *f, const ProtobufCMessage *req, const uint8_t *raw,
                            size_t raw_len, struct rpc_error *err);

/* Queue thread: the whole on_call of a policy-checked RPC. Unpacks the
 * request as `desc` (INVALID_ARGUMENT if it is not one), makes the flow,
 * lets `prepare` fill it, and posts it to the loop or answers the refusal. */
void flow_handle(struct rpc_call *call, const uint8_t *req, size_t len,
                 const struct flow_kind *kind, const ProtobufCMessageDescriptor *desc,
                 flow_prepare_fn *prepare);

/* Loop thread, at shutdown, once the grace period is over: from now on no
 * flow waits or starts a Twilio request (UNAVAILABLE SHUTTING_DOWN, nothing
 * sent). Flows waiting on a timer get that at once; flows whose Twilio
 * request is on the wire are cut and answered outcome unknown (UNKNOWN),
 * their idempotency record saying so, since Twilio may have acted. Calls
 * again are no-ops. */
void flow_shutdown(struct flow_ctx *ctx);

struct evbuffer;
/* Appends commsgate_policy_refusals_total{reason}, summed over the n
 * workers' ctx[]. Any thread, while they all live. */
void flow_metrics(struct flow_ctx *const *ctx, int n, struct evbuffer *out);

/* For prepare: idempotency scope, the record key for `key` sent by this
 * call's caller (request metadata `commsgate-caller`, else "default") to
 * f->to through this RPC, and the request's fingerprint. Queue thread. */
void flow_set_idempotency(struct flow *f, const char *key, const uint8_t *req, size_t req_len);
/* For prepare, after flow_set_idempotency: the StatusCallback URL for
 * `path` (public URL + path). With an idempotency key it carries the key's
 * record (?cg=...), so the first status callback resolves an unknown
 * outcome at once (webhook/handlers.c); without it when that does not fit
 * in cap. CG_EINVAL if even the bare URL does not fit. */
int flow_status_callback(const struct flow *f, const char *path, char *out, size_t cap);
/* For prepare: copies a built form into the flow; CG_EINVAL if it
 * overflowed its buffer, CG_ENOMEM. Queue thread. */
int flow_set_form(struct flow *f, const struct form *form);
/* For respond: packs m into buf; 0 if it does not fit. */
size_t flow_pack(const ProtobufCMessage *m, uint8_t *buf, size_t cap);

#endif
