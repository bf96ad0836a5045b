/* verify_start.lua and verify_check.lua: arguments, replies, the give-back. */
#include "redis/verify_limits.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "redis/keys.h"
#include "redis/redis.h"

/* Both scripts answer {'ok'} or {'wait', ms, 'limit'|'cooldown'}. */
static void parse(const redisReply *r, struct policy_result *res, enum reason limit)
{
    if (strcmp(policy_reply_str(r, 0, NULL), "ok") == 0) {
        res->verdict = POLICY_GO;
        return;
    }
    res->verdict = POLICY_REFUSE;
    res->ms = policy_reply_ll(r, 1);
    res->reason = strcmp(policy_reply_str(r, 2, NULL), "cooldown") == 0 ? REASON_VERIFY_COOLDOWN : limit;
}

static void parse_start(const redisReply *r, struct policy_result *res)
{
    parse(r, res, REASON_VERIFY_SEND_LIMIT);
}

static void parse_check(const redisReply *r, struct policy_result *res)
{
    parse(r, res, REASON_VERIFY_CHECK_LIMIT);
}

int verify_limits_start(struct redis_ctx *r, const struct config *cfg, const char *to,
                        const char *id, struct policy_req *req)
{
    char key[KEYS_MAX], most[12], window[24], cooldown[24];
    if (keys_make(key, sizeof(key), KEYS_VSEND, to, NULL))
        return CG_EINVAL;
    snprintf(most, sizeof(most), "%d", cfg->verify_max_sends);
    snprintf(window, sizeof(window), "%lld", (long long)cfg->verify_send_window_s * 1000);
    snprintf(cooldown, sizeof(cooldown), "%lld", (long long)cfg->verify_cooldown_s * 1000);
    const char *keys[] = {key};
    const char *args[] = {most, window, cooldown, id};
    req->parse = parse_start;
    return policy_run(r, POLICY_VERIFY_START, 1, keys, 4, args, req);
}

void verify_limits_give_back(struct redis_ctx *r, const char *to, const char *id)
{
    char key[KEYS_MAX];
    if (keys_make(key, sizeof(key), KEYS_VSEND, to, NULL))
        return;
    const char *argv[] = {"ZREM", key, id};
    if (redis_command_argv(r, redis_on_write, (void *)"verification place", 3, argv, NULL))
        log_warn("redis_write_skipped", "verification place %s not given back: Redis down", id);
}

int verify_limits_check(struct redis_ctx *r, const struct config *cfg, const char *to,
                        const char *id, struct policy_req *req)
{
    char key[KEYS_MAX], most[12], window[24];
    if (keys_make(key, sizeof(key), KEYS_VCHECK, to, NULL))
        return CG_EINVAL;
    snprintf(most, sizeof(most), "%d", cfg->verify_max_checks);
    snprintf(window, sizeof(window), "%lld", (long long)cfg->verify_check_window_s * 1000);
    const char *keys[] = {key};
    const char *args[] = {most, window, id};
    req->parse = parse_check;
    return policy_run(r, POLICY_VERIFY_CHECK, 1, keys, 3, args, req);
}
