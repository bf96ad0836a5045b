/* The path every policy-checked RPC takes, after its handler has validated
 * the request and built the Twilio form on the queue thread:
 *
 *   loop: one pipelined Redis round trip (the recipient's script + the
 *         account budget) -> wait within the deadline if the budget says so
 *         -> Twilio -> answer -> record the outcome (idempotency, lease,
 *         reservations) without making the caller wait for it.
 *
 * Each RPC family supplies a flow_kind; the flow owns the call from
 * flow_start until it answers. */
#ifndef COMMSGATE_RPC_FLOW_H
#define COMMSGATE_RPC_FLOW_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "../redis/account.h"
#include "../redis/policy.h"
#include "../twilio/errors.h"
#include "../twilio/twilio.h"
#include "server.h"

struct flow;

/* What the recipient's script said. */
enum flow_verdict {
    FLOW_GO,        /* proceed to the account budget and Twilio */
    FLOW_REFUSE,    /* answer with the error filled in */
    FLOW_REPEAT,    /* idempotent repeat: answer with the stored outcome */
    FLOW_IN_FLIGHT, /* the same key is being sent: poll until it is done */
};

struct flow_kind {
    const char *rpc;     /* "SendSMS": logs and metrics */
    enum twilio_api api;
    enum policy_script script;
    /* KEYS and ARGV for `script`, written into the flow's buffers. */
    int (*policy_args)(struct flow *f, const char **keys, int *nkeys, const char **args,
                       int *nargs);
    /* Reads the script's reply. */
    enum flow_verdict (*decide)(struct flow *f, const redisReply *reply, struct rpc_error *err);
    /* Twilio answered OK: packs the response into buf (cap bytes) and returns
     * its length, or 0 with *err filled to refuse after all (CheckVerification
     * reading Twilio's answer). */
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
    /* Optional. The request was surely not acted on: hand back what the
     * script reserved (a verification send's place in the limit). */
    void (*undo)(struct flow *f);
};

#define FLOW_KEY_MAX 400
#define FLOW_ARG_MAX 64

struct flow {
    const struct flow_kind *kind;
    struct rpc_call *call;
    struct app *app;

    char to[320];      /* the recipient as the keys name it */
    char *form;        /* the Twilio request body; owned */
    size_t form_len;
    int cost;          /* segments charged to the account rate; 0: concurrency only */
    char idem[FLOW_KEY_MAX]; /* idempotency record key; "" without a key */
    char fp[33];       /* request fingerprint, for the idempotency record */
    char id[40];       /* unique per request: lease and reservation id */


    /* Family-specific facts the handler worked out (segments, template...). */
    union {
        struct {
            unsigned segments;
            int encoding;
        } sms;
        int is_template;
        int channel;
    } u;

    /* Private to flow.c. */
    int need_number, need_account, have_lease;
    int pending, polls;
    int number_noscript, account_noscript;
    enum flow_verdict verdict;
    int number_lost, account_lost;
    int64_t account_wait_ms;  /* the account said wait (busy, or rate slot too far) */
    int64_t account_delay_ms; /* the account gave a rate slot this far ahead */
    struct account_req acct;
    struct rpc_error err;
    char errmsg[640];
    char repeat_code[12];
    char *repeat_body;
    size_t repeat_len;
    char repeat_msg[256];
    int repeat_twilio;
    struct event *timer;
    struct flow *wait_prev, *wait_next; /* on the waiting list while timed */
};

/* Fills the flow from the unpacked request (to, form, cost, idem, u) on the
 * queue thread; returns 0, or -1 with err filled (err->msg may point at
 * f->errmsg). `raw` is the request as received, for the idempotency
 * fingerprint. */
typedef int flow_prepare_fn(struct flow *f, const ProtobufCMessage *req, const uint8_t *raw,
                            size_t raw_len, struct rpc_error *err);

/* Queue thread: the whole on_call of a policy-checked RPC. Unpacks the
 * request as `desc` (INVALID_ARGUMENT if it is not one), makes the flow,
 * lets `prepare` fill it, and starts it or answers the refusal. */
void flow_handle(struct rpc_call *call, const uint8_t *req, size_t len,
                 const struct flow_kind *kind, const ProtobufCMessageDescriptor *desc,
                 flow_prepare_fn *prepare);

struct evbuffer;
/* Appends commsgate_policy_refusals_total{reason} (opt-outs, closed windows,
 * verification and account limits...). Loop thread. */
void flow_metrics(struct evbuffer *out);

/* For respond(): packs m into buf; 0 if it does not fit. */
size_t flow_pack(const ProtobufCMessage *m, uint8_t *buf, size_t cap);

/* Queue thread, from an RPC handler that has filled kind, to, form, cost,
 * idem, fp (and u). Allocates nothing else; takes over the call and the
 * flow (flow_new's memory), and posts it to the loop. */
void flow_start(struct flow *f);

/* Queue thread: a zeroed flow for `call`, with a fresh id; NULL (and the
 * call answered RESOURCE_EXHAUSTED) when out of memory. */
struct flow *flow_new(struct rpc_call *call, const struct flow_kind *kind);

/* Queue thread: answers the call with `err` and frees the flow (a handler
 * refusing bad input before flow_start). */
void flow_reject(struct flow *f, const struct rpc_error *err);

/* Loop thread, at shutdown: answers every flow waiting on a timer (budget
 * or idempotency poll) with UNAVAILABLE, since its timer will not fire. */
void flow_shutdown(void);

/* Idempotency scope: the record key for `key` sent by this call's caller
 * (request metadata `commsgate-caller`, else "default") to `to`. */
void flow_set_idempotency(struct flow *f, const char *key, const uint8_t *req, size_t req_len);

/* Helpers for kinds. */
/* Loop thread. Format a Redis key (cg:{to}:suffix) or argument into
 * scratch slot i (keys 0-2, arguments 0-5) and return it; valid until the
 * next call for that slot, which is enough since policy_eval and
 * redis_command_argv copy their arguments. Kept off the flow, which would
 * otherwise carry 1.6 KB per call in flight for a moment's use. */
const char *flow_key(struct flow *f, int i, const char *suffix);
const char *flow_arg(struct flow *f, int i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fire-and-forget Redis command on the loop thread (failures are logged). */
void flow_redis(struct flow *f, int argc, const char **argv, const size_t *lens);

struct form;
/* Queue thread: copies a built form into the flow; CG_EINVAL if it
 * overflowed its buffer, CG_ENOMEM. */
int flow_set_form(struct flow *f, const struct form *form);

/* For kinds whose script is send.lua (SMS, WhatsApp, calls). */
int flow_send_args(struct flow *f, int check_optout, int needs_window, const char **keys,
                   int *nkeys, const char **args, int *nargs);
enum flow_verdict flow_send_decide(struct flow *f, const redisReply *r, struct rpc_error *err);
/* Loop thread, fire-and-forget: Twilio said 21610 / 63016. */
void flow_optout(struct flow *f);
void flow_close_window(struct flow *f);

#endif
