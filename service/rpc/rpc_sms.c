/* SendSMS: validation, segment count and the Twilio form on the queue
 * thread; the opt-out list, idempotency and the account budget through the
 * shared flow (send.lua + account.lua). */
#include "rpc/rpc_sms.h"

#include <stdio.h>
#include <string.h>

#include "app.h"
#include "commsgate/v1/messaging.pb-c.h"
#include "core/config.h"
#include "core/text.h"
#include "rpc/flow.h"
#include "rpc/validate.h"
#include "twilio/form.h"
#include "twilio/segments.h"

#define SMS_MAX_CHARS 1600

static size_t respond(struct flow *f, const struct twilio_result *res, uint8_t *buf, size_t cap,
                      struct rpc_error *err)
{
    Commsgate__V1__SendSMSResponse r = COMMSGATE__V1__SEND_SMSRESPONSE__INIT;
    r.sid = (char *)(res->sid ? res->sid : "");
    r.status = (char *)(res->status ? res->status : "queued");
    r.segments = f->u.sms.segments;
    r.encoding = f->u.sms.encoding;
    return flow_pack(&r.base, buf, cap);
}

static const struct flow_kind sms_kind = {
    .rpc = "SendSMS",
    .api = TWILIO_API_MESSAGES,
    .policy = FLOW_POLICY_SEND,
    .respond = respond,
    .twilio_actions = TWILIO_ACTION_OPT_OUT,
    .tracks_message = 1,
    .resolve_api = "Messages",
    .spend = CALLER_SPEND_MESSAGE,
};

static int build_form(struct flow *f, const Commsgate__V1__SendSMSRequest *r, char *msg,
                      size_t msglen)
{
    const struct config *cfg = f->app->cfg;
    char buf[16384], callback[600];
    struct form form;

    form_init(&form, buf, sizeof(buf));
    form_add(&form, "To", r->to);
    if (*r->sender && r->sender[0] == '+')
        form_add(&form, "From", r->sender);
    else if (*r->sender)
        form_add(&form, "MessagingServiceSid", r->sender);
    else if (cfg->phone_number[0])
        form_add(&form, "From", cfg->phone_number);
    else
        form_add(&form, "MessagingServiceSid", cfg->messaging_service_sid);
    form_add(&form, "Body", r->body);
    flow_status_callback(f, "/webhooks/twilio/messages/status", callback, sizeof(callback));
    form_add(&form, "StatusCallback", callback);
    if (flow_set_form(f, &form)) {
        snprintf(msg, msglen, "request too large");
        return -1;
    }
    return 0;
}

static int check(const Commsgate__V1__SendSMSRequest *r, const struct config *cfg, char *msg,
                 size_t len)
{
    if (validate_utf8("to", r->to, msg, len) || validate_utf8("body", r->body, msg, len) ||
        validate_utf8("sender", r->sender, msg, len) ||
        validate_utf8("idempotency_key", r->idempotency_key, msg, len))
        return -1;
    if (validate_e164("to", r->to, msg, len))
        return -1;
    if (!*r->body) {
        snprintf(msg, len, "body: required");
        return -1;
    }
    size_t chars = text_utf8_chars(r->body, strlen(r->body));
    if (chars > SMS_MAX_CHARS) {
        snprintf(msg, len, "body: at most %d characters, got %zu", SMS_MAX_CHARS, chars);
        return -1;
    }
    if (*r->sender && r->sender[0] == '+' && validate_e164("sender", r->sender, msg, len))
        return -1;
    if (*r->sender && r->sender[0] != '+' && validate_sid("sender", r->sender, "MG", msg, len))
        return -1;
    return validate_idempotency_key(r->idempotency_key, msg, len);
}

static int prepare(struct flow *f, const ProtobufCMessage *msg, const uint8_t *raw,
                   size_t raw_len, struct rpc_error *err)
{
    const Commsgate__V1__SendSMSRequest *r = (const Commsgate__V1__SendSMSRequest *)msg;
    const struct config *cfg = f->app->cfg;
    struct segments_info seg;

    if (check(r, cfg, f->errmsg, sizeof(f->errmsg)))
        return -1;
    if (!*r->sender && !cfg->phone_number[0] && !cfg->messaging_service_sid[0]) {
        err->code = GRPC_STATUS_FAILED_PRECONDITION;
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "sender: empty, and neither TWILIO_PHONE_NUMBER nor TWILIO_MESSAGING_SERVICE_SID "
                 "is configured");
        return -1;
    }
    if (segments_count(r->body, strlen(r->body), &seg)) {
        snprintf(f->errmsg, sizeof(f->errmsg), "body: not valid UTF-8");
        return -1;
    }
    f->u.sms.segments = seg.segments;
    f->u.sms.encoding = seg.encoding == SEGMENTS_GSM7 ? COMMSGATE__V1__ENCODING__ENCODING_GSM7
                                                      : COMMSGATE__V1__ENCODING__ENCODING_UCS2;
    f->cost = (int)seg.segments;
    f->check_optout = 1; /* an SMS STOP forbids SMS */
    snprintf(f->to, sizeof(f->to), "%s", r->to);
    flow_set_idempotency(f, r->idempotency_key, raw, raw_len);
    if (build_form(f, r, f->errmsg, sizeof(f->errmsg))) {
        err->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        return -1;
    }
    return 0;
}

static void on_call(struct rpc_call *call, const uint8_t *req, size_t len)
{
    flow_handle(call, req, len, &sms_kind, &commsgate__v1__send_smsrequest__descriptor, prepare);
}

void rpc_sms_method(struct rpc_method *m)
{
    m->on_call = on_call;
}
