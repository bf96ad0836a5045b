/* What each Twilio webhook changes: message status (never backwards),
 * inbound keywords and the WhatsApp window, call status; each event applied
 * once and appended once to the events stream. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../app.h"
#include "../core/config.h"
#include "../core/log.h"
#include "../redis/policy.h"
#include "../redis/redis.h"
#include "events.h"
#include "server.h"

#define TWIML_EMPTY "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>"
#define KEEP_S 604800 /* message status and dedupe records: 7 days */

/* Status names and how far along each is; a status never replaces one of
 * equal or higher rank. */
const char *const handlers_statuses[16] = {
    "accepted", "scheduled", "queued", "sending", "sent", "receiving", "received", "delivered",
    "undelivered", "failed", "canceled", "partially_delivered", "read", NULL, NULL, NULL};
static const int ranks[16] = {0, 0, 1, 2, 3, 3, 4, 4, 4, 4, 4, 4, 5};

int handlers_status_index(const char *status)
{
    for (int i = 0; status && handlers_statuses[i]; i++)
        if (strcmp(handlers_statuses[i], status) == 0)
            return i;
    return -1;
}

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

static void fail_503(struct webhook_req *w, const char *why)
{
    log_event(LOG_LEVEL_WARN, "webhook_not_applied",
              json_pack("{s:s, s:s}", "route", w->route, "reason", why));
    webhook_reply(w, 503, "text/plain", why);
}

/* After the event is in the stream: answer Twilio. */
static void on_appended(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct webhook_req *w = privdata;
    const redisReply *r = reply;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        /* Forget the dedupe mark so Twilio's retry applies the event again. */
        const char *argv[] = {"DEL", w->dedupe};
        redis_command_argv(w->app->redis, NULL, NULL, 2, argv, NULL);
        fail_503(w, "the events stream did not take the event");
        return;
    }
    if (strcmp(w->route, "messages_inbound") == 0)
        webhook_reply(w, 200, "text/xml", TWIML_EMPTY);
    else
        webhook_reply(w, 200, "text/plain", "");
}

static void append_or_fail(struct webhook_req *w, const char **fields, int nfields)
{
    if (events_append(w->app, fields, nfields, on_appended, w))
        fail_503(w, "Redis is unreachable");
}

static const char *reply_word(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || !r->element[0]->str)
        return NULL;
    return r->element[0]->str;
}

/* --- message status --- */

static void on_status_applied(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct webhook_req *w = privdata;
    const char *what = reply_word(reply);
    if (!what) {
        fail_503(w, "Redis did not apply the status");
        return;
    }
    if (strcmp(what, "dup") == 0) {
        webhook_reply(w, 200, "text/plain", "");
        return;
    }
    const char *status = webhook_param(w, "MessageStatus");
    struct webhook_metrics *m = webhook_metrics(w->ctx);
    m->statuses[handlers_status_index(status)]++;
    const char *err = webhook_param(w, "ErrorCode");
    const char *fields[] = {"type", "message_status", "sid", webhook_param(w, "MessageSid"),
                            "status", status, "error_code", err ? err : "",
                            "from", webhook_param(w, "From") ? webhook_param(w, "From") : "",
                            "to", webhook_param(w, "To") ? webhook_param(w, "To") : "",
                            "applied", strcmp(what, "new") == 0 ? "1" : "0"};
    append_or_fail(w, fields, 14);
}

void handlers_message_status(struct webhook_req *w)
{
    const char *sid = webhook_param(w, "MessageSid");
    const char *status = webhook_param(w, "MessageStatus");
    const char *err = webhook_param(w, "ErrorCode");
    int idx = handlers_status_index(status);

    if (!valid_sid(sid, "SMMM") || idx < 0 || (err && strspn(err, "0123456789") != strlen(err))) {
        webhook_reply(w, 400, "text/plain", "MessageSid, MessageStatus or ErrorCode malformed");
        return;
    }
    snprintf(w->keybuf[0], sizeof(w->keybuf[0]), "cg:{%s}:msg", sid);
    snprintf(w->dedupe, sizeof(w->dedupe), "cg:{%s}:ev:%s", sid,
             w->token[0] ? w->token : status);
    snprintf(w->argbuf[1], sizeof(w->argbuf[1]), "%d", ranks[idx]);
    snprintf(w->argbuf[3], sizeof(w->argbuf[3]), "%d", KEEP_S);
    const char *keys[] = {w->keybuf[0], w->dedupe};
    const char *args[] = {status, w->argbuf[1], err ? err : "", w->argbuf[3]};
    if (policy_eval(w->app->redis, POLICY_MESSAGE_STATUS, 2, keys, 4, args, on_status_applied, w))
        fail_503(w, "Redis is unreachable");
}

/* --- inbound messages --- */

static const char *const stop_words[] = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END",
                                         "QUIT", "OPTOUT", "REVOKE", NULL};
static const char *const start_words[] = {"START", "YES", "UNSTOP", NULL};
static const char *const help_words[] = {"HELP", "INFO", NULL};

static int in_list(const char *word, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(word, list[i]) == 0)
            return 1;
    return 0;
}

/* "stop", "start", "help" or "": the whole message, trimmed, any case; or
 * Twilio's OptOutType when Advanced Opt-Out sets it. */
static const char *keyword(const char *body, const char *opt_out_type)
{
    char word[16];
    if (opt_out_type && *opt_out_type) {
        if (strcasecmp(opt_out_type, "STOP") == 0)
            return "stop";
        if (strcasecmp(opt_out_type, "START") == 0)
            return "start";
        if (strcasecmp(opt_out_type, "HELP") == 0)
            return "help";
    }
    if (!body)
        return "";
    while (isspace((unsigned char)*body))
        body++;
    size_t n = strlen(body);
    while (n && isspace((unsigned char)body[n - 1]))
        n--;
    if (n == 0 || n >= sizeof(word))
        return "";
    for (size_t i = 0; i < n; i++)
        word[i] = (char)toupper((unsigned char)body[i]);
    word[n] = '\0';
    if (in_list(word, stop_words))
        return "stop";
    if (in_list(word, start_words))
        return "start";
    if (in_list(word, help_words))
        return "help";
    return "";
}

static void on_inbound_applied(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct webhook_req *w = privdata;
    const char *what = reply_word(reply);
    if (!what) {
        fail_503(w, "Redis did not apply the message");
        return;
    }
    if (strcmp(what, "dup") == 0) {
        webhook_reply(w, 200, "text/xml", TWIML_EMPTY);
        return;
    }
    const char *kw = w->argbuf[0];
    struct webhook_metrics *m = webhook_metrics(w->ctx);
    if (strcmp(kw, "stop") == 0)
        m->optouts++;
    else if (strcmp(kw, "start") == 0)
        m->optins++;
    else if (strcmp(kw, "help") == 0)
        m->help++;
    const char *body = webhook_param(w, "Body"), *media = webhook_param(w, "NumMedia");
    const char *fields[] = {"type", "inbound_message", "sid", webhook_param(w, "MessageSid"),
                            "channel", w->argbuf[1][0] == '1' ? "whatsapp" : "sms",
                            "from", webhook_param(w, "From"),
                            "to", webhook_param(w, "To") ? webhook_param(w, "To") : "",
                            "body", body ? body : "", "num_media", media ? media : "0",
                            "keyword", kw};
    append_or_fail(w, fields, 16);
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
    int whatsapp = strncmp(from, "whatsapp:", 9) == 0;
    snprintf(number, sizeof(number), "%s", whatsapp ? from + 9 : from);
    if (number[0] != '+' || strspn(number + 1, "0123456789") != strlen(number + 1)) {
        webhook_reply(w, 400, "text/plain", "From is not a phone number");
        return;
    }
    /* Keywords act on SMS: a WhatsApp "STOP" is Meta's to handle. */
    const char *kw = whatsapp ? "" : keyword(webhook_param(w, "Body"),
                                             webhook_param(w, "OptOutType"));
    snprintf(w->dedupe, sizeof(w->dedupe), "cg:{%s}:in:%s", number,
             w->token[0] ? w->token : sid);
    snprintf(w->keybuf[1], sizeof(w->keybuf[1]), "cg:{%s}:optout", number);
    snprintf(w->keybuf[2], sizeof(w->keybuf[2]), "cg:{%s}:wa", number);
    snprintf(w->argbuf[0], sizeof(w->argbuf[0]), "%s", kw);
    snprintf(w->argbuf[1], sizeof(w->argbuf[1]), "%d", whatsapp);
    snprintf(w->argbuf[2], sizeof(w->argbuf[2]), "%lld",
             (long long)w->app->cfg->optout_ttl_days * 86400);
    snprintf(w->argbuf[3], sizeof(w->argbuf[3]), "%d", KEEP_S);
    snprintf(w->argbuf[4], sizeof(w->argbuf[4]), "%d", KEEP_S);
    const char *keys[] = {w->dedupe, w->keybuf[1], w->keybuf[2]};
    /* The opt-out action: STOP and START only; HELP is recorded. */
    const char *action = strcmp(kw, "help") == 0 ? "" : kw;
    const char *args[] = {action, w->argbuf[1], w->argbuf[2], w->argbuf[3], w->argbuf[4]};
    if (policy_eval(w->app->redis, POLICY_INBOUND, 3, keys, 5, args, on_inbound_applied, w))
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
        webhook_reply(w, 200, "text/plain", "");
        return;
    }
    const char *dur = webhook_param(w, "CallDuration");
    const char *fields[] = {"type", "call_status", "sid", webhook_param(w, "CallSid"),
                            "status", webhook_param(w, "CallStatus"),
                            "duration", dur ? dur : "",
                            "from", webhook_param(w, "From") ? webhook_param(w, "From") : "",
                            "to", webhook_param(w, "To") ? webhook_param(w, "To") : ""};
    append_or_fail(w, fields, 12);
}

void handlers_call_status(struct webhook_req *w)
{
    const char *sid = webhook_param(w, "CallSid");
    const char *status = webhook_param(w, "CallStatus");
    char ttl[16];

    if (!valid_sid(sid, "CA") || !status || !*status || strlen(status) > 32) {
        webhook_reply(w, 400, "text/plain", "CallSid or CallStatus malformed");
        return;
    }
    snprintf(w->dedupe, sizeof(w->dedupe), "cg:{%s}:ev:%s", sid,
             w->token[0] ? w->token : status);
    snprintf(ttl, sizeof(ttl), "%d", KEEP_S);
    const char *argv[] = {"SET", w->dedupe, "1", "NX", "EX", ttl};
    if (redis_command_argv(w->app->redis, on_call_seen, w, 6, argv, NULL))
        fail_503(w, "Redis is unreachable");
}
