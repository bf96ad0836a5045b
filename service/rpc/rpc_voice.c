/* PlaceCall: exactly one of a TwiML URL (https only), a TwiML document, or
 * text to speak (commsgate writes and escapes the TwiML); idempotency and the
 * account's concurrency cap through the shared flow. */
#include "rpc/rpc_voice.h"

#include <stdio.h>
#include <string.h>

#include "app.h"
#include "commsgate/v1/messaging.pb-c.h"
#include "core/config.h"
#include "core/text.h"
#include "rpc/flow.h"
#include "rpc/validate.h"
#include "twilio/form.h"

/* Twilio's limit for the Twiml parameter. */
#define TWIML_MAX 4000

static size_t respond(struct flow *f, const struct twilio_result *res, uint8_t *buf, size_t cap,
                      struct rpc_error *err)
{
    Commsgate__V1__PlaceCallResponse r = COMMSGATE__V1__PLACE_CALL_RESPONSE__INIT;
    r.sid = (char *)(res->sid ? res->sid : "");
    r.status = (char *)(res->status ? res->status : "queued");
    return flow_pack(&r.base, buf, cap);
}

static const struct flow_kind call_kind = {
    .rpc = "PlaceCall",
    .api = TWILIO_API_CALLS,
    /* An SMS STOP does not forbid calls; no window either. */
    .policy = FLOW_POLICY_SEND,
    .respond = respond,
    .resolve_api = "Calls",
};

/* <Response><Say voice=".." language="..">text</Say></Response>, escaped. */
static int say_twiml(const Commsgate__V1__Say *say, char *out, size_t len, char *msg,
                     size_t msglen)
{
    char text[TWIML_MAX], voice[128], lang[64];
    size_t w;

    if (!*say->text) {
        snprintf(msg, msglen, "say.text: required");
        return -1;
    }
    if (text_xml_escape(say->text, text, sizeof(text), &w) ||
        text_xml_escape(say->voice, voice, sizeof(voice), &w) ||
        text_xml_escape(say->language, lang, sizeof(lang), &w)) {
        snprintf(msg, msglen, "say: text too long or holds characters XML cannot carry");
        return -1;
    }
    int n = snprintf(out, len, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say%s%s%s%s%s%s>%s</Say></Response>",
                     *voice ? " voice=\"" : "", voice, *voice ? "\"" : "",
                     *lang ? " language=\"" : "", lang, *lang ? "\"" : "", text);
    if (n < 0 || (size_t)n >= len) {
        snprintf(msg, msglen, "say.text: too long for a call's TwiML (%d bytes at most)", TWIML_MAX);
        return -1;
    }
    return 0;
}

static int check(const Commsgate__V1__PlaceCallRequest *r, char *msg, size_t len)
{
    if (validate_utf8("to", r->to, msg, len) || validate_utf8("caller_id", r->caller_id, msg, len) ||
        validate_utf8("idempotency_key", r->idempotency_key, msg, len))
        return -1;
    if (validate_e164("to", r->to, msg, len))
        return -1;
    if (*r->caller_id && validate_e164("caller_id", r->caller_id, msg, len))
        return -1;
    switch (r->instructions_case) {
    case COMMSGATE__V1__PLACE_CALL_REQUEST__INSTRUCTIONS_URL:
        if (validate_utf8("url", r->url, msg, len))
            return -1;
        if (!text_is_https_url(r->url)) {
            snprintf(msg, len, "url: must be an https:// URL");
            return -1;
        }
        break;
    case COMMSGATE__V1__PLACE_CALL_REQUEST__INSTRUCTIONS_TWIML:
        if (validate_utf8("twiml", r->twiml, msg, len))
            return -1;
        if (!*r->twiml || strlen(r->twiml) > TWIML_MAX) {
            snprintf(msg, len, "twiml: 1 to %d bytes", TWIML_MAX);
            return -1;
        }
        break;
    case COMMSGATE__V1__PLACE_CALL_REQUEST__INSTRUCTIONS_SAY:
        if (validate_utf8("say.text", r->say->text, msg, len) ||
            validate_utf8("say.voice", r->say->voice, msg, len) ||
            validate_utf8("say.language", r->say->language, msg, len))
            return -1;
        break;
    default:
        snprintf(msg, len, "url, twiml or say: one is required");
        return -1;
    }
    return validate_idempotency_key(r->idempotency_key, msg, len);
}

static int build_form(struct flow *f, const Commsgate__V1__PlaceCallRequest *r, char *msg,
                      size_t msglen)
{
    const struct config *cfg = f->app->cfg;
    char buf[16384], twiml[TWIML_MAX + 256], callback[600];
    static const char *const events[] = {"initiated", "ringing", "answered", "completed"};
    struct form form;

    form_init(&form, buf, sizeof(buf));
    form_add(&form, "To", r->to);
    form_add(&form, "From", *r->caller_id ? r->caller_id : cfg->phone_number);
    switch (r->instructions_case) {
    case COMMSGATE__V1__PLACE_CALL_REQUEST__INSTRUCTIONS_URL:
        form_add(&form, "Url", r->url);
        break;
    case COMMSGATE__V1__PLACE_CALL_REQUEST__INSTRUCTIONS_TWIML:
        form_add(&form, "Twiml", r->twiml);
        break;
    default:
        if (say_twiml(r->say, twiml, sizeof(twiml), msg, msglen))
            return -1;
        form_add(&form, "Twiml", twiml);
        break;
    }
    flow_status_callback(f, "/webhooks/twilio/calls/status", callback, sizeof(callback));
    form_add(&form, "StatusCallback", callback);
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
        form_add(&form, "StatusCallbackEvent", events[i]);
    if (flow_set_form(f, &form)) {
        snprintf(msg, msglen, "request too large");
        return -1;
    }
    return 0;
}

static int prepare(struct flow *f, const ProtobufCMessage *msg, const uint8_t *raw,
                   size_t raw_len, struct rpc_error *err)
{
    const Commsgate__V1__PlaceCallRequest *r = (const Commsgate__V1__PlaceCallRequest *)msg;

    if (check(r, f->errmsg, sizeof(f->errmsg)))
        return -1;
    if (!*r->caller_id && !f->app->cfg->phone_number[0]) {
        err->code = GRPC_STATUS_FAILED_PRECONDITION;
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "caller_id: empty, and TWILIO_PHONE_NUMBER is not configured");
        return -1;
    }
    snprintf(f->to, sizeof(f->to), "%s", r->to);
    flow_set_idempotency(f, r->idempotency_key, raw, raw_len);
    return build_form(f, r, f->errmsg, sizeof(f->errmsg));
}

static void on_call(struct rpc_call *call, const uint8_t *req, size_t len)
{
    flow_handle(call, req, len, &call_kind, &commsgate__v1__place_call_request__descriptor,
                prepare);
}

void rpc_voice_method(struct rpc_method *m)
{
    m->on_call = on_call;
}
