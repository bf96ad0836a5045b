/* EVALSHA plumbing for the Lua scripts in scripts/. */
#include "redis/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "redis/redis.h"
#include "redis/scripts.h"

#define MAX_ARGV 16

static const char *const script_names[POLICY_SCRIPT_COUNT] = {
    [POLICY_SEND] = "send",
    [POLICY_ACCOUNT] = "account",
    [POLICY_VERIFY_START] = "verify_start",
    [POLICY_VERIFY_CHECK] = "verify_check",
    [POLICY_MESSAGE_STATUS] = "message_status",
    [POLICY_INBOUND] = "inbound",
    [POLICY_IDEMPOTENCY] = "idempotency",
    [POLICY_RESOLVE_QUEUE] = "resolve_queue",
    [POLICY_CALLER_QUOTA] = "caller_quota",
};

static const struct script_source *scripts[POLICY_SCRIPT_COUNT];

int policy_init(void)
{
    for (int s = 0; s < POLICY_SCRIPT_COUNT; s++) {
        scripts[s] = NULL;
        for (unsigned i = 0; i < script_source_count; i++)
            if (strcmp(script_sources[i].name, script_names[s]) == 0)
                scripts[s] = &script_sources[i];
        if (!scripts[s]) {
            log_error("policy_script_missing", "no embedded script %s.lua", script_names[s]);
            return CG_EINVAL;
        }
    }
    return CG_OK;
}

const char *policy_sha(enum policy_script s)
{
    return scripts[s]->sha1;
}

static void on_loaded(redisAsyncContext *ac, void *reply, void *privdata)
{
    const redisReply *r = reply;
    const char *name = privdata;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_event(LOG_LEVEL_ERROR, "policy_script_load_failed",
                  json_pack("{s:s, s:s}", "script", name, "reply", r->str));
}

void policy_load(redisAsyncContext *ac, void *unused)
{
    for (int s = 0; s < POLICY_SCRIPT_COUNT; s++) {
        const char *argv[] = {"SCRIPT", "LOAD", scripts[s]->text};
        size_t lens[] = {6, 4, scripts[s]->len};
        redisAsyncCommandArgv(ac, on_loaded, (void *)script_names[s], 3, argv, lens);
    }
}

void policy_reload(struct redis_ctx *r)
{
    for (int s = 0; s < POLICY_SCRIPT_COUNT; s++) {
        const char *argv[] = {"SCRIPT", "LOAD", scripts[s]->text};
        size_t lens[] = {6, 4, scripts[s]->len};
        redis_command_argv(r, on_loaded, (void *)script_names[s], 3, argv, lens);
    }
}

int policy_eval(struct redis_ctx *r, enum policy_script s, int nkeys, const char *const *keys,
                int nargs, const char *const *args, policy_reply_fn *fn, void *privdata)
{
    const char *argv[MAX_ARGV];
    int argc = 3 + nkeys + nargs;

    if (argc > MAX_ARGV)
        return CG_EINVAL;
    for (int i = 0; i < nkeys; i++)
        argv[3 + i] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[3 + nkeys + i] = args[i];
    return policy_eval_argv(r, s, nkeys, argc, argv, NULL, fn, privdata);
}

int policy_eval_argv(struct redis_ctx *r, enum policy_script s, int nkeys, int argc,
                     const char **argv, size_t *lens, policy_reply_fn *fn, void *privdata)
{
    char nk[12];

    if (argc < 3 + nkeys)
        return CG_EINVAL;
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVALSHA";
    argv[1] = scripts[s]->sha1;
    argv[2] = nk;
    if (lens) {
        lens[0] = 7;
        lens[1] = strlen(argv[1]);
        lens[2] = strlen(nk);
    }
    return redis_command_argv(r, fn, privdata, argc, argv, lens);
}

int policy_is_noscript(const redisReply *reply)
{
    return reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

static void on_decided(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct policy_req *req = privdata;
    const redisReply *r = reply;
    struct policy_result res = {.verdict = POLICY_LOST};

    if (policy_is_noscript(r)) {
        res.verdict = POLICY_NOSCRIPT;
    } else if (r && r->type == REDIS_REPLY_ERROR) {
        log_event(LOG_LEVEL_ERROR, "policy_script_error", json_pack("{s:s}", "reply", r->str));
    } else if (r) {
        req->parse(r, &res);
    }
    req->done(&res, req);
    free(res.repeat);
}

int policy_run(struct redis_ctx *r, enum policy_script s, int nkeys, const char *const *keys,
               int nargs, const char *const *args, struct policy_req *req)
{
    return policy_eval(r, s, nkeys, keys, nargs, args, on_decided, req);
}

int policy_run_argv(struct redis_ctx *r, enum policy_script s, int nkeys, int argc,
                    const char **argv, size_t *lens, struct policy_req *req)
{
    return policy_eval_argv(r, s, nkeys, argc, argv, lens, on_decided, req);
}

const char *policy_reply_str(const redisReply *r, size_t i, size_t *len)
{
    const redisReply *e = r && r->type == REDIS_REPLY_ARRAY && i < r->elements ? r->element[i]
                                                                                : NULL;
    if (!e || !e->str) {
        if (len)
            *len = 0;
        return "";
    }
    if (len)
        *len = e->len;
    return e->str;
}

long long policy_reply_ll(const redisReply *r, size_t i)
{
    if (r && r->type == REDIS_REPLY_ARRAY && i < r->elements &&
        r->element[i]->type == REDIS_REPLY_INTEGER)
        return r->element[i]->integer;
    return atoll(policy_reply_str(r, i, NULL));
}

enum policy_applied policy_applied(const redisReply *r)
{
    const char *what = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1
                           ? r->element[0]->str
                           : NULL;
    if (!what)
        return POLICY_APPLIED_LOST;
    if (strcmp(what, "dup") == 0)
        return POLICY_APPLIED_DUP;
    return strcmp(what, "stale") == 0 ? POLICY_APPLIED_STALE : POLICY_APPLIED_NEW;
}
