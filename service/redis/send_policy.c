/* send.lua's arguments and reply, and the writes to the records it reads. */
#include "redis/send_policy.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "redis/keys.h"
#include "redis/redis.h"

static void parse(const redisReply *r, struct policy_result *res)
{
    const char *what = policy_reply_str(r, 0, NULL);

    res->verdict = POLICY_REFUSE;
    if (strcmp(what, "ok") == 0) {
        res->verdict = POLICY_GO;
    } else if (strcmp(what, "opted_out") == 0) {
        res->reason = REASON_OPTED_OUT;
    } else if (strcmp(what, "window_closed") == 0) {
        res->reason = REASON_WHATSAPP_WINDOW_CLOSED;
        res->ms = policy_reply_ll(r, 1);
    } else {
        log_error("policy_script_error", "send.lua answered '%s'", what);
        res->reason = REASON_INTERNAL;
    }
}

int send_policy_check(struct redis_ctx *r, const struct config *cfg,
                      const struct send_policy_args *a, struct policy_req *req)
{
    char optout[KEYS_MAX], window[KEYS_MAX], window_ms[24];
    const char *keys[] = {optout, window};

    if (keys_make(optout, sizeof(optout), KEYS_OPTOUT, a->to, NULL) ||
        keys_make(window, sizeof(window), KEYS_WINDOW, a->to, NULL))
        return CG_EINVAL;
    snprintf(window_ms, sizeof(window_ms), "%lld", (long long)cfg->whatsapp_window_s * 1000);
    const char *args[] = {a->check_optout ? "1" : "0", a->needs_window ? "1" : "0", window_ms};
    req->parse = parse;
    return policy_run(r, POLICY_SEND, 2, keys, 3, args, req);
}

static void write_or_log(struct redis_ctx *r, const char *what, int argc, const char **argv,
                         const size_t *lens)
{
    if (redis_command_argv(r, redis_on_write, (void *)what, argc, argv, lens))
        log_event(LOG_LEVEL_WARN, "redis_write_skipped", json_pack("{s:s}", "what", what));
}

void send_policy_opt_out(struct redis_ctx *r, const struct config *cfg, const char *to)
{
    char key[KEYS_MAX], ttl[24];
    if (keys_make(key, sizeof(key), KEYS_OPTOUT, to, NULL))
        return;
    snprintf(ttl, sizeof(ttl), "%lld", (long long)cfg->optout_ttl_days * 86400);
    const char *argv[] = {"SET", key, "1", "EX", ttl};
    write_or_log(r, "opt-out", 5, argv, NULL);
}

void send_policy_close_window(struct redis_ctx *r, const char *to)
{
    char key[KEYS_MAX];
    if (keys_make(key, sizeof(key), KEYS_WINDOW, to, NULL))
        return;
    const char *argv[] = {"DEL", key};
    write_or_log(r, "window close", 2, argv, NULL);
}

