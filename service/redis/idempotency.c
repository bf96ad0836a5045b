/* idempotency.lua's arguments and replies, settling, and drops that wait
 * for Redis to come back. */
#include "redis/idempotency.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "redis/keys.h"
#include "redis/redis.h"

/* Drops kept while Redis is away; past this many the oldest claims are left
 * to their lease (a repeat then hears "outcome unknown"), and it is logged. */
#define MAX_KEPT_DROPS 4096

struct drop {
    struct idempotency_ctx *ctx;
    struct drop *next;
    int reloads; /* NOSCRIPT answers so far */
    char owner[48];
    char key[]; /* the record's key */
};

struct idempotency_ctx {
    struct redis_ctx *redis;
    const struct config *cfg;
    struct drop *kept; /* drops to send again when Redis is back */
    size_t nkept;
};

int idempotency_key(char *out, size_t cap, const char *caller, const char *key)
{
    char tag[KEYS_MAX];
    int n = snprintf(tag, sizeof(tag), "key:%s:%s", caller, key);
    if (n < 0 || (size_t)n >= sizeof(tag))
        return -1;
    return keys_make(out, cap, KEYS_IDEMPOTENCY, tag, NULL);
}

int idempotency_new(struct redis_ctx *redis, const struct config *cfg,
                    struct idempotency_ctx **out)
{
    struct idempotency_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return CG_ENOMEM;
    c->redis = redis;
    c->cfg = cfg;
    *out = c;
    return CG_OK;
}

void idempotency_free(struct idempotency_ctx **cp)
{
    struct idempotency_ctx *c = *cp;
    if (!c)
        return;
    while (c->kept) {
        struct drop *d = c->kept;
        c->kept = d->next;
        free(d);
    }
    free(c);
    *cp = NULL;
}

/* {'found', sid, status}: an OK outcome with no packed body; the flow
 * packs the response from sid and status. */
static struct policy_outcome *found_of(const redisReply *r)
{
    size_t slen, tlen;
    const char *sid = policy_reply_str(r, 1, &slen), *status = policy_reply_str(r, 2, &tlen);
    struct policy_outcome *o = calloc(1, sizeof(*o) + slen + tlen + 2);
    if (!o)
        return NULL;
    o->sid = (char *)(o + 1);
    memcpy(o->sid, sid, slen);
    o->status = o->sid + slen + 1;
    memcpy(o->status, status, tlen);
    return o;
}

/* {'repeat', code, body, msg, tw}: one allocation holds it all. */
static struct policy_outcome *repeat_of(const redisReply *r)
{
    size_t blen, mlen;
    const char *body = policy_reply_str(r, 2, &blen), *msg = policy_reply_str(r, 3, &mlen);
    struct policy_outcome *o = malloc(sizeof(*o) + blen + mlen + 2);
    if (!o)
        return NULL;
    o->code = (int)policy_reply_ll(r, 1);
    o->body = (uint8_t *)(o + 1);
    memcpy(o->body, body, blen);
    o->body[blen] = '\0';
    o->body_len = blen;
    o->msg = (char *)o->body + blen + 1;
    memcpy(o->msg, msg, mlen);
    o->msg[mlen] = '\0';
    o->twilio_code = (int)policy_reply_ll(r, 4);
    o->sid = o->status = NULL;
    return o;
}

static void parse(const redisReply *r, struct policy_result *res)
{
    const char *what = policy_reply_str(r, 0, NULL);

    res->verdict = POLICY_REFUSE;
    if (strcmp(what, "ok") == 0) {
        res->verdict = POLICY_GO;
    } else if (strcmp(what, "repeat") == 0) {
        res->repeat = repeat_of(r);
        res->verdict = res->repeat ? POLICY_REPEAT : POLICY_LOST;
    } else if (strcmp(what, "found") == 0) {
        res->repeat = found_of(r);
        res->verdict = res->repeat ? POLICY_FOUND : POLICY_LOST;
    } else if (strcmp(what, "resolving") == 0) {
        res->verdict = POLICY_RESOLVING;
    } else if (strcmp(what, "in_flight") == 0) {
        res->verdict = POLICY_IN_FLIGHT;
        res->ms = policy_reply_ll(r, 1);
    } else if (strcmp(what, "expired") == 0) {
        res->reason = REASON_OUTCOME_UNKNOWN;
    } else if (strcmp(what, "mismatch") == 0) {
        res->reason = REASON_IDEMPOTENCY_KEY_REUSED;
    } else {
        log_error("policy_script_error", "idempotency.lua answered '%s'", what);
        res->reason = REASON_INTERNAL;
    }
}

int idempotency_claim(struct idempotency_ctx *c, const char *key, const char *fp,
                      const char *owner, int64_t lease_ms, const struct idempotency_send *send,
                      struct policy_req *req)
{
    char lease[24], ttl[16];
    snprintf(lease, sizeof(lease), "%lld", (long long)lease_ms);
    snprintf(ttl, sizeof(ttl), "%d", c->cfg->idempotency_ttl_s);
    const char *argv[12] = {NULL, NULL, NULL, key, "claim", fp, owner, lease, ttl,
                            send && send->api ? send->api : "", send ? send->form : ""};
    size_t lens[12];
    for (int i = 3; i < 11; i++)
        lens[i] = argv[i] ? strlen(argv[i]) : 0;
    lens[10] = send && send->form ? send->form_len : 0;
    argv[10] = send && send->form ? send->form : "";
    req->parse = parse;
    return policy_run_argv(c->redis, POLICY_IDEMPOTENCY, 1, 11, argv, lens, req);
}

void idempotency_settle(struct idempotency_ctx *c, const char *key,
                        const struct policy_outcome *o)
{
    char code[12], ttl[24], tw[12];
    snprintf(code, sizeof(code), "%d", o->code);
    snprintf(tw, sizeof(tw), "%d", o->twilio_code);
    snprintf(ttl, sizeof(ttl), "%d", c->cfg->idempotency_ttl_s);
    const char *argv[] = {"HSET", key, "state", "done", "code", code, "body",
                          o->body ? (const char *)o->body : "", "msg", o->msg ? o->msg : "",
                          "tw", tw};
    size_t lens[12];
    for (int i = 0; i < 12; i++)
        lens[i] = strlen(argv[i]);
    lens[7] = o->body ? o->body_len : 0;
    const char *exp[] = {"EXPIRE", key, ttl};
    /* A settle that cannot reach Redis leaves the claim to its lease: a
     * repeat then hears "outcome unknown", which is the truth it has. */
    if (redis_command_argv(c->redis, redis_on_write, (void *)"idempotency record", 12, argv,
                           lens) ||
        redis_command_argv(c->redis, redis_on_write, (void *)"idempotency record", 3, exp,
                           NULL))
        log_warn("redis_write_skipped", "idempotency record %s not settled: Redis down", key);
}

static void keep(struct drop *d)
{
    struct idempotency_ctx *c = d->ctx;
    if (c->nkept >= MAX_KEPT_DROPS) {
        log_warn("idempotency_drop_lost", "claim %s left to its lease: too many kept", d->key);
        free(d);
        return;
    }
    d->next = c->kept;
    c->kept = d;
    c->nkept++;
}

static int send_drop(struct drop *d);

static void on_dropped(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct drop *d = privdata;
    if (!reply) { /* the connection went before the answer: send it again later */
        keep(d);
        return;
    }
    if (policy_is_noscript(reply) && d->reloads++ < 3) {
        /* Redis lost the script (flush, failover): load it ahead, again. */
        policy_reload(d->ctx->redis);
        if (send_drop(d))
            keep(d);
        return;
    }
    if (((const redisReply *)reply)->type == REDIS_REPLY_ERROR)
        log_warn("idempotency_drop_lost", "claim %s left to its lease: %s", d->key,
                 ((const redisReply *)reply)->str);
    free(d);
}

static int send_drop(struct drop *d)
{
    const char *keys[] = {d->key};
    const char *args[] = {"drop", d->owner};
    return policy_eval(d->ctx->redis, POLICY_IDEMPOTENCY, 1, keys, 2, args, on_dropped, d);
}

void idempotency_drop(struct idempotency_ctx *c, const char *key, const char *owner)
{
    size_t n = strlen(key);
    struct drop *d = malloc(sizeof(*d) + n + 1);
    if (!d) {
        log_warn("idempotency_drop_lost", "claim %s left to its lease: out of memory", key);
        return;
    }
    d->ctx = c;
    d->next = NULL;
    d->reloads = 0;
    snprintf(d->owner, sizeof(d->owner), "%s", owner);
    memcpy(d->key, key, n + 1);
    if (send_drop(d))
        keep(d);
}

void idempotency_redis_up(struct idempotency_ctx *c)
{
    struct drop *list = c->kept;
    if (c->nkept)
        log_info("idempotency_drops_resent", "%zu claims Redis could not drop earlier",
                 c->nkept);
    c->kept = NULL;
    c->nkept = 0;
    while (list) {
        struct drop *d = list;
        list = d->next;
        if (send_drop(d))
            keep(d);
    }
}

void idempotency_unknown(struct idempotency_ctx *c, const char *key, const char *owner)
{
    const char *keys[] = {key};
    const char *args[] = {"unknown", owner};
    if (policy_eval(c->redis, POLICY_IDEMPOTENCY, 1, keys, 2, args, redis_on_write,
                    (void *)"idempotency record"))
        log_warn("redis_write_skipped", "idempotency record %s not marked unknown: Redis down",
                 key);
}

struct reading {
    idempotency_facts_fn *fn;
    idempotency_written_fn *written;
    void *data;
};

static struct reading *reading_new(idempotency_facts_fn *fn, idempotency_written_fn *written,
                                   void *data)
{
    struct reading *rd = malloc(sizeof(*rd));
    if (rd)
        *rd = (struct reading){.fn = fn, .written = written, .data = data};
    return rd;
}

static enum idempotency_state state_of(const char *s)
{
    if (!*s)
        return IDEMPOTENCY_GONE;
    if (strcmp(s, "pending") == 0)
        return IDEMPOTENCY_PENDING;
    if (strcmp(s, "done") == 0)
        return IDEMPOTENCY_DONE;
    if (strcmp(s, "found") == 0)
        return IDEMPOTENCY_FOUND;
    return IDEMPOTENCY_UNKNOWN;
}

static void on_read(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct reading rd = *(struct reading *)privdata;
    const redisReply *r = reply;
    struct idempotency_facts f = {.state = IDEMPOTENCY_LOST, .api = "", .form = ""};

    free(privdata);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 6) {
        f.state = state_of(policy_reply_str(r, 0, NULL));
        f.api = policy_reply_str(r, 1, NULL);
        f.form = policy_reply_str(r, 2, NULL);
        f.t0 = policy_reply_ll(r, 3);
        f.t1 = policy_reply_ll(r, 4);
        f.lease_left_ms = policy_reply_ll(r, 5);
    }
    rd.fn(&f, rd.data);
}

int idempotency_read(struct idempotency_ctx *c, const char *key, idempotency_facts_fn *fn,
                     void *data)
{
    struct reading *rd = reading_new(fn, NULL, data);
    const char *keys[] = {key};
    const char *args[] = {"read"};
    if (!rd)
        return CG_ENOMEM;
    int rc = policy_eval(c->redis, POLICY_IDEMPOTENCY, 1, keys, 1, args, on_read, rd);
    if (rc)
        free(rd);
    return rc;
}

static void on_written(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct reading rd = *(struct reading *)privdata;
    const redisReply *r = reply;
    int ok = -1;

    free(privdata);
    if (r && r->type == REDIS_REPLY_ARRAY)
        ok = strcmp(policy_reply_str(r, 0, NULL), "kept") != 0;
    else if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("redis_write_failed", "idempotency record: %s", r->str);
    if (rd.written)
        rd.written(ok, rd.data);
}

static int write_op(struct idempotency_ctx *c, const char *key, int nargs, const char **args,
                    idempotency_written_fn *fn, void *data)
{
    struct reading *rd = reading_new(NULL, fn, data);
    const char *keys[] = {key};
    if (!rd)
        return CG_ENOMEM;
    int rc = policy_eval(c->redis, POLICY_IDEMPOTENCY, 1, keys, nargs, args, on_written, rd);
    if (rc)
        free(rd);
    return rc;
}

int idempotency_found(struct idempotency_ctx *c, const char *key, const char *sid,
                      const char *status, idempotency_written_fn *fn, void *data)
{
    const char *args[] = {"found", sid, status};
    return write_op(c, key, 3, args, fn, data);
}

int idempotency_absent(struct idempotency_ctx *c, const char *key, int64_t t0,
                       idempotency_written_fn *fn, void *data)
{
    char t[24];
    snprintf(t, sizeof(t), "%lld", (long long)t0);
    const char *args[] = {"absent", t};
    return write_op(c, key, 2, args, fn, data);
}
