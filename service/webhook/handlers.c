/* What each Twilio webhook changes, through the record modules of
 * service/redis/: message status (message_status.c), inbound keywords and
 * the WhatsApp window (inbound.c), call status; each event applied once and
 * appended once to the events stream. */
#include <ctype.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>

#include "app.h"
#include "core/config.h"
#include "core/log.h"
#include "redis/idempotency.h"
#include "redis/inbound.h"
#include "redis/keys.h"
#include "redis/message_status.h"
#include "redis/policy.h"
#include "redis/redis.h"
#include "webhook/events.h"
#include "webhook/server.h"

#define TWIML_EMPTY "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>"

static int valid_sid(const char *s, const char *prefixes)
{
    if (!s || strlen(s) != 34)
        return 0;
    int ok = 0;
    for (const char *p = prefixes; *p; p += 2)
        ok |= strncmp(s, p, 2) == 0;
    for (int i = 2; ok && i < 34; i++)
        ok = isxdigit((unsigned char)s[i]);
    return ok;
}

static const char *param_or_empty(const struct webhook_req *w, const char *name)
{
    const char *v = webhook_param(w, name);
    return v ? v : "";
}

/* The SID Twilio names the event by, so that an operator can find an event
 * Twilio was refused (and may not send again) in Twilio's console. Each
 * handler bounds it before any Redis work, and a 503 comes only after. */
static const char *event_sid(const struct webhook_req *w)
{
    const char *sid = webhook_param(w, "MessageSid");
    if (!sid)
        sid = webhook_param(w, "CallSid");
    return sid ? sid : "";
}

/* Twilio is told 503, and one line, `event`, says so. Twilio sends the
 * event again only when the webhook URL asks it to (#rc=...), so each
 * opt-out or opt-in is logged, at ERROR; other events a few a second, then
 * counted, so that an outage or a lagging replica does not become a flood
 * of lines. */
static void answer_503(struct webhook_req *w, const char *event, const char *why)
{
    unsigned long suppressed = 0;
    int optout = w->keyword == INBOUND_STOP || w->keyword == INBOUND_START;
    if (optout || log_limit_allow(webhook_not_applied_log(w->ctx), 10, &suppressed))
        log_event(optout ? LOG_LEVEL_ERROR : LOG_LEVEL_WARN, event,
                  json_pack("{s:s, s:s, s:s, s:s, s:I}", "route", w->route, "sid",
                            event_sid(w), "keyword", inbound_keyword_name(w->keyword),
                            "reason", why, "more_since_last", (json_int_t)suppressed));
    webhook_reply(w, 503, "text/plain", why);
}

static void fail_503(struct webhook_req *w, const char *why)
{
    answer_503(w, "webhook_not_applied", why);
}

static int is_inbound(const struct webhook_req *w)
{
    return strcmp(w->route, "messages_inbound") == 0;
}

/* Answers Twilio for an event it need not send again. */
static void reply_done(struct webhook_req *w)
{
    if (is_inbound(w))
        webhook_reply(w, 200, "text/xml", TWIML_EMPTY);
    else
        webhook_reply(w, 200, "text/plain", "");
}

/* The replicas have the event's writes, or not in time: then Twilio is told
 * 503, which it retries when the webhook URL asks it to (#rc=...). The
 * dedupe mark stays: if the master kept the writes, a retry finds them
 * applied; if a failover lost them, the mark went with them and a retry
 * applies the event anew. An opt-out is never acknowledged to Twilio before
 * the replicas have it. */
static void on_durable(struct redis_waiter *d, int ok)
{
    struct webhook_req *w = (struct webhook_req *)((char *)d - offsetof(struct webhook_req, durable));
    if (ok) {
        reply_done(w);
        return;
    }
    answer_503(w, "webhook_unconfirmed",
               "not yet on COMMSGATE_REDIS_WAIT_REPLICAS replicas; send it again");
}

/* After the event is in the stream: answer Twilio. */
static void on_appended(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct webhook_req *w = privdata;
    const redisReply *r = reply;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        /* Forget the dedupe mark so Twilio's retry applies the event again. */
        const char *argv[] = {"DEL", w->dedupe};
        redis_command_argv(app_home(w->app)->redis, NULL, NULL, 2, argv, NULL);
        fail_503(w, "the events stream did not take the event");
        return;
    }
    if (w->app->cfg->redis_wait_replicas > 0) {
        w->durable.done = on_durable;
        redis_after_writes(app_home(w->app)->redis, &w->durable);
        return;
    }
    reply_done(w);
}

static void append_or_fail(struct webhook_req *w, const char **fields, const size_t *lens,
                           int nfields)
{
    if (events_append(w->app, fields, lens, nfields, on_appended, w))
        fail_503(w, "Redis is unreachable");
}

/* The key that marks an event applied: what names the event (a status of
 * a SID, an inbound message's SID), never I-Twilio-Idempotency-Token, which
 * is not signed: a replay with a fresh token would apply the event again. */
static int event_key(struct webhook_req *w, enum keys_record record, const char *tag,
                     const char *name)
{
    return keys_make(w->dedupe, sizeof(w->dedupe), record, tag, name);
}

/* Answers Twilio when nothing is left to do: the apply failed (503, so
 * Twilio sends it again) or the event was seen before (200). Returns 1 if
 * it answered. */
static int answered_early(struct webhook_req *w, enum policy_applied applied, const char *lost)
{
    if (applied == POLICY_APPLIED_LOST)
        fail_503(w, lost);
    else if (applied == POLICY_APPLIED_DUP)
        reply_done(w);
    else
        return 0;
    return 1;
}

/* --- resolving unknown outcomes from status callbacks --- */

/* A status callback of a keyed send names its idempotency record in the
 * URL (rpc/flow.c, flow_status_callback), which the signature covers. */
static void note_resolves(struct webhook_req *w)
{
    static const char prefix[] = "cg:{key:", suffix[] = "}:idem";
    const char *query = w->query;
    struct evkeyvalq q;

    w->resolves[0] = '\0';
    if (!query)
        return;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(query, &q) == 0) {
        const char *key = evhttp_find_header(&q, "cg");
        size_t n = key ? strlen(key) : 0;
        if (n > sizeof(prefix) + sizeof(suffix) && n < sizeof(w->resolves) &&
            strncmp(key, prefix, sizeof(prefix) - 1) == 0 &&
            strcmp(key + n - (sizeof(suffix) - 1), suffix) == 0)
            memcpy(w->resolves, key, n + 1);
    }
    evhttp_clear_headers(&q);
}

/* A new status of a keyed send: Twilio has it, whatever its sender heard.
 * Fire-and-forget: a record already settled keeps its answer, and one lost
 * here is still found in Twilio's list. */
static void resolve_by_callback(struct webhook_req *w, const char *sid, const char *status)
{
    if (w->resolves[0] &&
        idempotency_found(app_home(w->app)->idem, w->resolves, sid, status, NULL, NULL) != 0)
        log_warn("redis_write_skipped", "%s not resolved from its callback: Redis down",
                 w->resolves);
}

/* --- message status --- */

static void on_status_applied(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct webhook_req *w = privdata;
    enum policy_applied applied = policy_applied(reply);
    if (answered_early(w, applied, "Redis did not apply the status"))
        return;
    const char *status = webhook_param(w, "MessageStatus");
    webhook_metrics(w->ctx)->statuses[message_status_index(status)]++;
    resolve_by_callback(w, webhook_param(w, "MessageSid"), status);
    const char *fields[] = {"type", "message_status", "sid", webhook_param(w, "MessageSid"),
                            "status", status, "error_code", param_or_empty(w, "ErrorCode"),
                            "from", param_or_empty(w, "From"), "to", param_or_empty(w, "To"),
                            "applied", applied == POLICY_APPLIED_NEW ? "1" : "0"};
    append_or_fail(w, fields, NULL, 14);
}

void handlers_message_status(struct webhook_req *w)
{
    const char *sid = webhook_param(w, "MessageSid");
    const char *status = webhook_param(w, "MessageStatus");
    const char *err = webhook_param(w, "ErrorCode");

    if (!valid_sid(sid, "SMMM") || message_status_index(status) < 0 ||
        (err && strspn(err, "0123456789") != strlen(err)) ||
        event_key(w, KEYS_EVENT, sid, status)) {
        webhook_reply(w, 400, "text/plain", "MessageSid, MessageStatus or ErrorCode malformed");
        return;
    }
    note_resolves(w);
    if (message_status_apply(app_home(w->app)->redis, sid, status, err, w->dedupe, on_status_applied, w))
        fail_503(w, "Redis is unreachable");
}

/* --- inbound messages --- */

static void on_inbound_applied(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct webhook_req *w = privdata;
    if (answered_early(w, policy_applied(reply), "Redis did not apply the message"))
        return;
    struct webhook_metrics *m = webhook_metrics(w->ctx);
    if (w->keyword == INBOUND_STOP)
        m->optouts++;
    else if (w->keyword == INBOUND_START)
        m->optins++;
    else if (w->keyword == INBOUND_HELP)
        m->help++;
    const char *media = webhook_param(w, "NumMedia");
    size_t body_len;
    const char *body = webhook_param_len(w, "Body", &body_len);
    const char *fields[] = {"type", "inbound_message", "sid", webhook_param(w, "MessageSid"),
                            "channel", w->whatsapp ? "whatsapp" : "sms",
                            "from", webhook_param(w, "From"), "to", param_or_empty(w, "To"),
                            "body", body ? body : "", "num_media", media ? media : "0",
                            "keyword", inbound_keyword_name(w->keyword)};
    size_t lens[16];
    for (int i = 0; i < 16; i++)
        lens[i] = fields[i] ? strlen(fields[i]) : 0;
    lens[11] = body_len; /* by length: it may hold a NUL */
    append_or_fail(w, fields, lens, 16);
}

void handlers_inbound(struct webhook_req *w)
{
    const char *sid = webhook_param(w, "MessageSid");
    const char *from = webhook_param(w, "From");
    char number[64];

    if (!sid || !*sid || strlen(sid) > 64 || !from) {
        webhook_reply(w, 400, "text/plain", "MessageSid and From are required");
        return;
    }
    w->whatsapp = strncmp(from, "whatsapp:", 9) == 0;
    snprintf(number, sizeof(number), "%s", w->whatsapp ? from + 9 : from);
    if (number[0] != '+' || strspn(number + 1, "0123456789") != strlen(number + 1) ||
        event_key(w, KEYS_INBOUND, number, sid)) {
        webhook_reply(w, 400, "text/plain", "From is not a phone number");
        return;
    }
    /* Keywords act on SMS: a WhatsApp "STOP" is Meta's to handle. */
    size_t body_len;
    const char *body = webhook_param_len(w, "Body", &body_len);
    w->keyword = w->whatsapp ? INBOUND_NONE
                             : inbound_keyword(body, body_len, webhook_param(w, "OptOutType"));
    if (inbound_apply(app_home(w->app)->redis, w->app->cfg, number, w->dedupe, w->keyword, w->whatsapp,
                      on_inbound_applied, w))
        fail_503(w, "Redis is unreachable");
}

/* --- call status --- */

static void on_call_seen(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct webhook_req *w = privdata;
    const redisReply *r = reply;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        fail_503(w, "Redis did not record the call status");
        return;
    }
    if (r->type == REDIS_REPLY_NIL) { /* seen before */
        reply_done(w);
        return;
    }
    resolve_by_callback(w, webhook_param(w, "CallSid"), webhook_param(w, "CallStatus"));
    const char *fields[] = {"type", "call_status", "sid", webhook_param(w, "CallSid"),
                            "status", webhook_param(w, "CallStatus"),
                            "duration", param_or_empty(w, "CallDuration"),
                            "from", param_or_empty(w, "From"), "to", param_or_empty(w, "To")};
    append_or_fail(w, fields, NULL, 12);
}

void handlers_call_status(struct webhook_req *w)
{
    const char *sid = webhook_param(w, "CallSid");
    const char *status = webhook_param(w, "CallStatus");
    char keep[16];

    if (!valid_sid(sid, "CA") || !status || !*status || strlen(status) > 32 ||
        event_key(w, KEYS_EVENT, sid, status)) {
        webhook_reply(w, 400, "text/plain", "CallSid or CallStatus malformed");
        return;
    }
    note_resolves(w);
    snprintf(keep, sizeof(keep), "%d", MESSAGE_STATUS_KEEP_S);
    const char *argv[] = {"SET", w->dedupe, "1", "NX", "EX", keep};
    if (redis_command_argv(app_home(w->app)->redis, on_call_seen, w, 6, argv, NULL))
        fail_503(w, "Redis is unreachable");
}
