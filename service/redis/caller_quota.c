#include "redis/caller_quota.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#include "auth/callers.h"
#include "core/error.h"
#include "core/log.h"
#include "redis/keys.h"
#include "redis/redis.h"

/* The quotas a spend counts against, in the order they are checked. */
static int quotas_of(const struct caller *c, enum caller_spend spend, enum caller_quota *out)
{
    int n = 0;
    if (spend == CALLER_SPEND_MESSAGE) {
        if (c->quota[CALLER_QUOTA_MESSAGES_PER_SECOND])
            out[n++] = CALLER_QUOTA_MESSAGES_PER_SECOND;
        if (c->quota[CALLER_QUOTA_MESSAGES_PER_DAY])
            out[n++] = CALLER_QUOTA_MESSAGES_PER_DAY;
    } else if (spend == CALLER_SPEND_VERIFICATION &&
               c->quota[CALLER_QUOTA_VERIFICATIONS_PER_HOUR]) {
        out[n++] = CALLER_QUOTA_VERIFICATIONS_PER_HOUR;
    }
    return n;
}

int caller_quota_applies(const struct caller *c, enum caller_spend spend)
{
    enum caller_quota q[CALLER_QUOTA_COUNT];
    return c && quotas_of(c, spend, q) > 0;
}

static int key_of(char *out, size_t cap, const struct caller *c, enum caller_quota q)
{
    char tag[CALLER_NAME_MAX + 8];
    snprintf(tag, sizeof(tag), "caller:%s", c->name);
    return keys_make(out, cap, KEYS_QUOTA, tag, caller_quota_name(q));
}

static void parse(const redisReply *r, struct policy_result *res)
{
    if (strcmp(policy_reply_str(r, 0, NULL), "ok") == 0) {
        res->verdict = POLICY_GO;
        return;
    }
    res->verdict = POLICY_REFUSE;
    res->reason = REASON_CALLER_QUOTA;
    res->ms = policy_reply_ll(r, 1);
    const char *name = policy_reply_str(r, 2, NULL);
    for (int q = 0; q < CALLER_QUOTA_COUNT; q++)
        if (strcmp(name, caller_quota_name(q)) == 0)
            res->which = q;
}

int caller_quota_take(struct redis_ctx *r, const struct caller *c, enum caller_spend spend,
                      const char *id, struct policy_req *req)
{
    enum caller_quota q[CALLER_QUOTA_COUNT];
    char keys[CALLER_QUOTA_COUNT][KEYS_MAX], most[CALLER_QUOTA_COUNT][24],
        window[CALLER_QUOTA_COUNT][24];
    const char *kp[CALLER_QUOTA_COUNT], *args[1 + 3 * CALLER_QUOTA_COUNT];
    int n = quotas_of(c, spend, q), nargs = 0;

    if (n == 0)
        return CG_EINVAL;
    args[nargs++] = id;
    for (int i = 0; i < n; i++) {
        if (key_of(keys[i], sizeof(keys[i]), c, q[i]))
            return CG_EINVAL;
        kp[i] = keys[i];
        snprintf(most[i], sizeof(most[i]), "%ld", c->quota[q[i]]);
        snprintf(window[i], sizeof(window[i]), "%lld", caller_quota_window_ms(q[i]));
        args[nargs++] = most[i];
        args[nargs++] = window[i];
        args[nargs++] = caller_quota_name(q[i]);
    }
    req->parse = parse;
    return policy_run(r, POLICY_CALLER_QUOTA, n, kp, nargs, args, req);
}

void caller_quota_give_back(struct redis_ctx *r, const struct caller *c, enum caller_spend spend,
                            const char *id)
{
    enum caller_quota q[CALLER_QUOTA_COUNT];
    int n = quotas_of(c, spend, q);
    for (int i = 0; i < n; i++) {
        char key[KEYS_MAX];
        if (key_of(key, sizeof(key), c, q[i]))
            continue;
        const char *argv[] = {"ZREM", key, id};
        if (redis_command_argv(r, redis_on_write, (void *)"caller quota place", 3, argv, NULL))
            log_warn("redis_write_skipped", "caller quota place %s not given back: Redis down",
                     id);
    }
}
