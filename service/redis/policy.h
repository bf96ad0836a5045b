/* Running the policy scripts: EVALSHA with the SHA computed at startup,
 * scripts loaded on every (re)connect, and NOSCRIPT recognised so a caller
 * can reload and run again. Loop thread only, except policy_init. */
#ifndef COMMSGATE_REDIS_POLICY_H
#define COMMSGATE_REDIS_POLICY_H

#include <hiredis/async.h>

struct redis_ctx;

enum policy_script {
    POLICY_SEND,         /* send.lua: opt-out, WhatsApp window, idempotency */
    POLICY_ACCOUNT,      /* account.lua: send rate and concurrency, all replicas */
    POLICY_VERIFY_START, /* verify_start.lua */
    POLICY_VERIFY_CHECK, /* verify_check.lua */
    POLICY_MESSAGE_STATUS, /* message_status.lua: webhook status callbacks */
    POLICY_INBOUND,      /* inbound.lua: inbound messages, keywords, window */
    POLICY_SCRIPT_COUNT
};

/* Finds the embedded scripts and computes their SHA1s. Call once, before
 * any thread uses the rest. CG_EINVAL if a script is missing. */
int policy_init(void);

/* Pipelines SCRIPT LOAD for every script on a fresh connection (the hook
 * redis.c calls on connect), so EVALSHA finds them. */
void policy_load(redisAsyncContext *ac, void *unused);

/* EVALSHA script nkeys keys... args...; fn is called like
 * redis_command_argv's. Returns CG_EREDIS at once (fn not called) when Redis
 * is down. */
int policy_eval(struct redis_ctx *r, enum policy_script s, int nkeys, const char *const *keys,
                int nargs, const char *const *args, redisCallbackFn *fn, void *privdata);

/* policy_eval for argument lists longer than it takes (batches): argv has
 * argc entries, of which this fills the first three (EVALSHA, the SHA,
 * nkeys); keys then args follow. lens may be NULL (strlen), else its first
 * three entries are filled too. */
int policy_eval_argv(struct redis_ctx *r, enum policy_script s, int nkeys, int argc,
                     const char **argv, size_t *lens, redisCallbackFn *fn, void *privdata);

/* True for the error Redis gives when it lost the script (SCRIPT FLUSH,
 * failover): reload with policy_reload and run again. */
int policy_is_noscript(const redisReply *reply);
/* Loop thread: pipelines SCRIPT LOAD on r's connection. */
void policy_reload(struct redis_ctx *r);

/* The SHA1 of a script, hex; for tests and logs. */
const char *policy_sha(enum policy_script s);

#endif
