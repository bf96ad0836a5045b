/* Running the policy scripts: EVALSHA with the SHA computed at startup,
 * scripts loaded on every (re)connect, and NOSCRIPT recognised so a caller
 * can reload and run again. Loop thread only, except policy_init. */
#ifndef COMMSGATE_REDIS_POLICY_H
#define COMMSGATE_REDIS_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "core/reason.h"

/* hiredis's types, named without its headers: the record modules' users
 * (service/rpc/) never see a reply. */
struct redisAsyncContext;
struct redisReply;
struct redis_ctx;
/* hiredis's redisCallbackFn. */
typedef void policy_reply_fn(struct redisAsyncContext *ac, void *reply, void *privdata);

enum policy_script {
    POLICY_SEND,         /* send.lua: opt-out, WhatsApp window, idempotency */
    POLICY_ACCOUNT,      /* account.lua: send rate and concurrency, all replicas */
    POLICY_VERIFY_START, /* verify_start.lua */
    POLICY_VERIFY_CHECK, /* verify_check.lua */
    POLICY_MESSAGE_STATUS, /* message_status.lua: webhook status callbacks */
    POLICY_INBOUND,      /* inbound.lua: inbound messages, keywords, window */
    POLICY_IDEMPOTENCY,  /* idempotency.lua: a key's record, claim and drop */
    POLICY_RESOLVE_QUEUE, /* resolve_queue.lua: unknown outcomes due for resolving */
    POLICY_CALLER_QUOTA, /* caller_quota.lua: a caller's own quotas (callers file) */
    POLICY_SCRIPT_COUNT
};

/* What a decision script said, typed: the record modules (send_policy.c,
 * verify_limits.c) parse their script's reply into this. */
enum policy_verdict {
    POLICY_GO,        /* go ahead; whatever the script reserves is held */
    POLICY_REFUSE,    /* refused for `reason` */
    POLICY_REPEAT,    /* an idempotent repeat: answer with `repeat` */
    POLICY_IN_FLIGHT, /* the same idempotency key is being sent elsewhere */
    POLICY_FOUND,     /* an unknown outcome resolved: Twilio has it (repeat->sid) */
    POLICY_RESOLVING, /* an unknown outcome not resolved yet: being asked */
    POLICY_LOST,      /* Redis failed or went away: nothing is known to be held */
    POLICY_NOSCRIPT,  /* Redis lost the script: policy_reload and run again */
};

/* An answer stored against an idempotency key. */
struct policy_outcome {
    int code;        /* gRPC status */
    uint8_t *body;   /* the packed response (code 0) */
    size_t body_len;
    char *msg;       /* the status message otherwise */
    int twilio_code; /* non-zero when Twilio refused */
    char *sid, *status; /* POLICY_FOUND: what Twilio has; else NULL */
};

struct policy_result {
    enum policy_verdict verdict;
    enum reason reason; /* POLICY_REFUSE */
    /* POLICY_REFUSE: the wait in ms (verification limits), or when the
     * WhatsApp window closed (unix ms; 0: it never opened). */
    int64_t ms;
    int which; /* POLICY_REFUSE by caller_quota.lua: the quota spent (enum caller_quota) */
    /* POLICY_REPEAT, POLICY_FOUND: the stored answer, in one allocation; the callback
     * may take it (set it NULL), else it is freed after the callback. */
    struct policy_outcome *repeat;
};

struct policy_req;
typedef void policy_done_fn(struct policy_result *res, struct policy_req *req);

/* One decision script in flight; the caller embeds it (the call's flow)
 * and keeps it until `done` runs. */
struct policy_req {
    policy_done_fn *done; /* public: called exactly once, unless starting failed */
    void *data;           /* public */
    /* private: the record module's reply parser */
    void (*parse)(const struct redisReply *reply, struct policy_result *res);
};

/* Runs script `s` for req (req->parse set by the record module). CG_EREDIS
 * at once when Redis is down (done not called), CG_EINVAL if the arguments
 * do not fit. Loop thread. */
int policy_run(struct redis_ctx *r, enum policy_script s, int nkeys, const char *const *keys,
               int nargs, const char *const *args, struct policy_req *req);

/* policy_run with policy_eval_argv's argument list (binary-safe with lens). */
int policy_run_argv(struct redis_ctx *r, enum policy_script s, int nkeys, int argc,
                    const char **argv, size_t *lens, struct policy_req *req);

/* What an apply-once script ({'new'}, {'stale'} or {'dup'}) said. */
enum policy_applied {
    POLICY_APPLIED_NEW,
    POLICY_APPLIED_STALE, /* a new event, but older than what is stored */
    POLICY_APPLIED_DUP,   /* seen before: nothing changed */
    POLICY_APPLIED_LOST,  /* Redis failed: not applied */
};
enum policy_applied policy_applied(const struct redisReply *reply);

/* For the record modules' parsers: element i of an array reply as a string
 * ("" when absent or not a string; its length in *len if len is set), and
 * as a number (integer or string reply; 0 when absent). */
const char *policy_reply_str(const struct redisReply *reply, size_t i, size_t *len);
long long policy_reply_ll(const struct redisReply *reply, size_t i);

/* Finds the embedded scripts and computes their SHA1s. Call once, before
 * any thread uses the rest. CG_EINVAL if a script is missing. */
int policy_init(void);

/* Pipelines SCRIPT LOAD for every script on a fresh connection (the hook
 * redis.c calls on connect), so EVALSHA finds them. */
void policy_load(struct redisAsyncContext *ac, void *unused);

/* EVALSHA script nkeys keys... args...; fn is called like
 * redis_command_argv's. Returns CG_EREDIS at once (fn not called) when Redis
 * is down. */
int policy_eval(struct redis_ctx *r, enum policy_script s, int nkeys, const char *const *keys,
                int nargs, const char *const *args, policy_reply_fn *fn, void *privdata);

/* policy_eval for argument lists longer than it takes (batches): argv has
 * argc entries, of which this fills the first three (EVALSHA, the SHA,
 * nkeys); keys then args follow. lens may be NULL (strlen), else its first
 * three entries are filled too. */
int policy_eval_argv(struct redis_ctx *r, enum policy_script s, int nkeys, int argc,
                     const char **argv, size_t *lens, policy_reply_fn *fn, void *privdata);

/* True for the error Redis gives when it lost the script (SCRIPT FLUSH,
 * failover): reload with policy_reload and run again. */
int policy_is_noscript(const struct redisReply *reply);
/* Loop thread: pipelines SCRIPT LOAD on r's connection. */
void policy_reload(struct redis_ctx *r);

/* The SHA1 of a script, hex; for tests and logs. */
const char *policy_sha(enum policy_script s);

#endif
