/* StartVerification and CheckVerification (Twilio Verify), with app-level
 * limits stricter than Twilio's (redis/verify_limits.c) checked by the
 * shared flow. */
#include "rpc/rpc_verify.h"

#include <stdio.h>
#include <string.h>

#include "app.h"
#include "commsgate/v1/messaging.pb-c.h"
#include "core/config.h"
#include "core/text.h"
#include "rpc/flow.h"
#include "rpc/validate.h"
#include "twilio/form.h"

static const char *channel_name(int channel)
{
    switch (channel) {
    case COMMSGATE__V1__CHANNEL__CHANNEL_CALL:
        return "call";
    case COMMSGATE__V1__CHANNEL__CHANNEL_EMAIL:
        return "email";
    case COMMSGATE__V1__CHANNEL__CHANNEL_WHATSAPP:
        return "whatsapp";
    default:
        return "sms";
    }
}

static int channel_value(const char *name)
{
    if (name && strcmp(name, "call") == 0)
        return COMMSGATE__V1__CHANNEL__CHANNEL_CALL;
    if (name && strcmp(name, "email") == 0)
        return COMMSGATE__V1__CHANNEL__CHANNEL_EMAIL;
    if (name && strcmp(name, "whatsapp") == 0)
        return COMMSGATE__V1__CHANNEL__CHANNEL_WHATSAPP;
    return COMMSGATE__V1__CHANNEL__CHANNEL_SMS;
}

/* The verification forms are small; a too-large one is refused. */
static int set_form(struct flow *f, const struct form *form, struct rpc_error *err)
{
    if (!flow_set_form(f, form))
        return 0;
    err->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    snprintf(f->errmsg, sizeof(f->errmsg), "request too large");
    return -1;
}

/* --- StartVerification --- */

static size_t start_respond(struct flow *f, const struct twilio_result *res, uint8_t *buf,
                            size_t cap, struct rpc_error *err)
{
    Commsgate__V1__StartVerificationResponse r = COMMSGATE__V1__START_VERIFICATION_RESPONSE__INIT;
    const char *ch = res->channel;
    r.sid = (char *)(res->sid ? res->sid : "");
    r.status = (char *)(res->status ? res->status : "pending");
    r.channel = ch ? channel_value(ch) : f->u.channel;
    return flow_pack(&r.base, buf, cap);
}

static const struct flow_kind start_kind = {
    .rpc = "StartVerification",
    .api = TWILIO_API_VERIFY_START,
    .policy = FLOW_POLICY_VERIFY_START,
    .respond = start_respond,
    .resolve_api = "Attempts",
    .spend = CALLER_SPEND_VERIFICATION,
};

static int is_email(const char *s)
{
    const char *at = strchr(s, '@');
    size_t n = strlen(s);
    return at && at != s && !strchr(at + 1, '@') && strchr(at + 1, '.') && n <= 254 &&
           !strpbrk(s, " \t\r\n<>");
}

static int is_locale(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return 1;
    if (n < 2 || n > 10)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") == n;
}

static int start_prepare(struct flow *f, const ProtobufCMessage *msg, const uint8_t *raw,
                         size_t raw_len, struct rpc_error *err)
{
    const Commsgate__V1__StartVerificationRequest *r =
        (const Commsgate__V1__StartVerificationRequest *)msg;
    char buf[2048];
    struct form form;

    if (validate_utf8("to", r->to, f->errmsg, sizeof(f->errmsg)) ||
        validate_utf8("locale", r->locale, f->errmsg, sizeof(f->errmsg)) ||
        validate_utf8("idempotency_key", r->idempotency_key, f->errmsg, sizeof(f->errmsg)) ||
        validate_idempotency_key(r->idempotency_key, f->errmsg, sizeof(f->errmsg)))
        return -1;
    int channel = r->channel ? (int)r->channel : COMMSGATE__V1__CHANNEL__CHANNEL_SMS;
    if (channel < COMMSGATE__V1__CHANNEL__CHANNEL_SMS || channel > COMMSGATE__V1__CHANNEL__CHANNEL_WHATSAPP) {
        snprintf(f->errmsg, sizeof(f->errmsg), "channel: unknown value %d", channel);
        return -1;
    }
    if (channel == COMMSGATE__V1__CHANNEL__CHANNEL_EMAIL) {
        if (!is_email(r->to)) {
            snprintf(f->errmsg, sizeof(f->errmsg), "to: an email address for channel EMAIL");
            return -1;
        }
    } else if (validate_e164("to", r->to, f->errmsg, sizeof(f->errmsg))) {
        return -1;
    }
    if (!is_locale(r->locale)) {
        snprintf(f->errmsg, sizeof(f->errmsg), "locale: a language tag such as en or pt-BR");
        return -1;
    }
    if (!f->app->cfg->verify_service_sid[0]) {
        err->code = GRPC_STATUS_FAILED_PRECONDITION;
        snprintf(f->errmsg, sizeof(f->errmsg), "TWILIO_VERIFY_SERVICE_SID is not configured");
        return -1;
    }
    f->u.channel = channel;
    snprintf(f->to, sizeof(f->to), "%s", r->to);
    flow_set_idempotency(f, r->idempotency_key, raw, raw_len);
    form_init(&form, buf, sizeof(buf));
    form_add(&form, "To", r->to);
    form_add(&form, "Channel", channel_name(channel));
    if (*r->locale)
        form_add(&form, "Locale", r->locale);
    return set_form(f, &form, err);
}

static void start_on_call(struct rpc_call *call, const uint8_t *req, size_t len)
{
    flow_handle(call, req, len, &start_kind, &commsgate__v1__start_verification_request__descriptor,
                start_prepare);
}

/* --- CheckVerification --- */

static size_t check_respond(struct flow *f, const struct twilio_result *res, uint8_t *buf,
                            size_t cap, struct rpc_error *err)
{
    Commsgate__V1__CheckVerificationResponse r = COMMSGATE__V1__CHECK_VERIFICATION_RESPONSE__INIT;
    r.status = (char *)(res->status ? res->status : "");
    /* Only Twilio's "approved" makes a code valid; "pending" is a wrong code. */
    r.valid = res->status && strcmp(res->status, "approved") == 0;
    return flow_pack(&r.base, buf, cap);
}

static const struct flow_kind check_kind = {
    .rpc = "CheckVerification",
    .api = TWILIO_API_VERIFY_CHECK,
    .policy = FLOW_POLICY_VERIFY_CHECK,
    .respond = check_respond,
    .twilio_actions = TWILIO_ACTION_NOT_FOUND,
    .not_found_fmt = "no pending verification for %s: it expired, was approved, or was never "
                     "started",
};

static int check_prepare(struct flow *f, const ProtobufCMessage *msg, const uint8_t *raw,
                         size_t raw_len, struct rpc_error *err)
{
    const Commsgate__V1__CheckVerificationRequest *r =
        (const Commsgate__V1__CheckVerificationRequest *)msg;
    char buf[1024];
    struct form form;

    if (validate_utf8("to", r->to, f->errmsg, sizeof(f->errmsg)) ||
        validate_utf8("code", r->code, f->errmsg, sizeof(f->errmsg)))
        return -1;
    if (!is_email(r->to) && validate_e164("to", r->to, f->errmsg, sizeof(f->errmsg)))
        return -1;
    size_t n = strlen(r->code);
    if (n < 4 || n > 10 || strspn(r->code, "0123456789") != n) {
        snprintf(f->errmsg, sizeof(f->errmsg), "code: 4 to 10 digits");
        return -1;
    }
    if (!f->app->cfg->verify_service_sid[0]) {
        err->code = GRPC_STATUS_FAILED_PRECONDITION;
        snprintf(f->errmsg, sizeof(f->errmsg), "TWILIO_VERIFY_SERVICE_SID is not configured");
        return -1;
    }
    snprintf(f->to, sizeof(f->to), "%s", r->to);
    form_init(&form, buf, sizeof(buf));
    form_add(&form, "To", r->to);
    form_add(&form, "Code", r->code);
    return set_form(f, &form, err);
}

static void check_on_call(struct rpc_call *call, const uint8_t *req, size_t len)
{
    flow_handle(call, req, len, &check_kind, &commsgate__v1__check_verification_request__descriptor,
                check_prepare);
}

void rpc_verify_methods(struct rpc_method *start, struct rpc_method *check)
{
    start->on_call = start_on_call;
    check->on_call = check_on_call;
}
