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

int send_policy_idem_key(char *out, size_t cap, const char *to, const char *rpc,
                         const char *caller, const char *key)
{
    char rest[KEYS_MAX];
    int n = snprintf(rest, sizeof(rest), "%s:%s:%s", rpc, caller, key);
    if (n < 0 || (size_t)n >= sizeof(rest))
        return -1;
    return keys_make(out, cap, KEYS_IDEMPOTENCY, to, rest);
}

static const redisReply *element(const redisReply *r, size_t i)
{
    static const redisReply empty = {.type = REDIS_REPLY_STRING, .str = "", .len = 0};
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements || !r->element[i]->str)
        return &empty;
    return r->element[i];
}

/* {'repeat', code, body, msg, tw}: one allocation holds it all. */
static struct policy_outcome *repeat_of(const redisReply *r)
{
    const redisReply *body = element(r, 2), *msg = element(r, 3);
    struct policy_outcome *o = malloc(sizeof(*o) + body->len + msg->len + 2);
    if (!o)
        return NULL;
    o->code = atoi(element(r, 1)->str);
    o->body = (uint8_t *)(o + 1);
    memcpy(o->body, body->str, body->len);
    o->body[body->len] = '\0';
    o->body_len = body->len;
    o->msg = (char *)o->body + body->len + 1;
    memcpy(o->msg, msg->str, msg->len);
    o->msg[msg->len] = '\0';
    o->twilio_code = atoi(element(r, 4)->str);
    return o;
}

static void parse(const redisReply *r, struct policy_result *res)
{
    const char *what = element(r, 0)->str;

    res->verdict = POLICY_REFUSE;
    if (strcmp(what, "ok") == 0) {
        res->verdict = POLICY_GO;
    } else if (strcmp(what, "repeat") == 0) {
        res->repeat = repeat_of(r);
        res->verdict = res->repeat ? POLICY_REPEAT : POLICY_LOST;
    } else if (strcmp(what, "in_flight") == 0) {
        res->verdict = POLICY_IN_FLIGHT;
    } else if (strcmp(what, "opted_out") == 0) {
        res->reason = REASON_OPTED_OUT;
    } else if (strcmp(what, "window_closed") == 0) {
        res->reason = REASON_WHATSAPP_WINDOW_CLOSED;
        res->ms = atoll(element(r, 1)->str);
    } else if (strcmp(what, "mismatch") == 0) {
        res->reason = REASON_IDEMPOTENCY_KEY_REUSED;
    } else {
        log_error("policy_script_error", "send.lua answered '%s'", what);
        res->reason = REASON_INTERNAL;
    }
}

int send_policy_check(struct redis_ctx *r, const struct config *cfg,
                      const struct send_policy_args *a, struct policy_req *req)
{
    char optout[KEYS_MAX], window[KEYS_MAX], window_ms[24], ttl[16];
    const char *keys[3] = {optout, window, a->idem};
    int nkeys = a->idem && a->idem[0] ? 3 : 2;

    if (keys_make(optout, sizeof(optout), KEYS_OPTOUT, a->to, NULL) ||
        keys_make(window, sizeof(window), KEYS_WINDOW, a->to, NULL))
        return CG_EINVAL;
    snprintf(window_ms, sizeof(window_ms), "%lld", (long long)cfg->whatsapp_window_s * 1000);
    snprintf(ttl, sizeof(ttl), "%d", cfg->idempotency_ttl_s);
    const char *args[] = {a->check_optout ? "1" : "0", a->needs_window ? "1" : "0", window_ms,
                          ttl, a->fp && a->fp[0] ? a->fp : "-"};
    req->parse = parse;
    return policy_run(r, POLICY_SEND, nkeys, keys, 5, args, req);
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

void send_policy_settle(struct redis_ctx *r, const struct config *cfg, const char *idem,
                        const struct policy_outcome *o)
{
    char code[12], ttl[24], tw[12];
    if (!idem || !idem[0])
        return;
    snprintf(code, sizeof(code), "%d", o->code);
    snprintf(tw, sizeof(tw), "%d", o->twilio_code);
    snprintf(ttl, sizeof(ttl), "%d", cfg->idempotency_ttl_s);
    const char *argv[] = {"HSET", idem, "state", "done", "code", code, "body",
                          o->body ? (const char *)o->body : "", "msg", o->msg ? o->msg : "",
                          "tw", tw};
    size_t lens[12];
    for (int i = 0; i < 12; i++)
        lens[i] = strlen(argv[i]);
    lens[7] = o->body ? o->body_len : 0;
    write_or_log(r, "idempotency record", 12, argv, lens);
    const char *exp[] = {"EXPIRE", idem, ttl};
    write_or_log(r, "idempotency record", 3, exp, NULL);
}

void send_policy_drop_claim(struct redis_ctx *r, const char *idem)
{
    if (!idem || !idem[0])
        return;
    const char *argv[] = {"DEL", idem};
    write_or_log(r, "idempotency claim", 2, argv, NULL);
}
