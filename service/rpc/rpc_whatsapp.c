/* SendWhatsApp: free-form only inside the 24-hour customer-service window
 * (send.lua checks it), templates at any time. Numbers carry the whatsapp:
 * prefix on the wire only; Redis keys use the bare number. */
#include "rpc/rpc_whatsapp.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "commsgate/v1/messaging.pb-c.h"
#include "core/config.h"
#include "core/text.h"
#include "rpc/flow.h"
#include "rpc/validate.h"
#include "twilio/form.h"

#define MAX_MEDIA 10

static size_t respond(struct flow *f, const struct twilio_result *res, uint8_t *buf, size_t cap,
                      struct rpc_error *err)
{
    Commsgate__V1__SendWhatsAppResponse r = COMMSGATE__V1__SEND_WHATS_APP_RESPONSE__INIT;
    r.sid = (char *)(res->sid ? res->sid : "");
    r.status = (char *)(res->status ? res->status : "queued");
    r.template_ = f->u.is_template;
    return flow_pack(&r.base, buf, cap);
}

static const struct flow_kind whatsapp_kind = {
    .rpc = "SendWhatsApp",
    .api = TWILIO_API_MESSAGES,
    .policy = FLOW_POLICY_SEND,
    .respond = respond,
    /* WhatsApp opt-outs are Meta's to handle: a 21610 records nothing. */
    .twilio_actions = TWILIO_ACTION_CLOSE_WINDOW,
    .tracks_message = 1,
    .resolve_api = "Messages",
    .spend = CALLER_SPEND_MESSAGE,
};

static int check(const Commsgate__V1__SendWhatsAppRequest *r, const struct config *cfg, char *msg,
                 size_t len)
{
    if (validate_utf8("to", r->to, msg, len) || validate_utf8("body", r->body, msg, len) ||
        validate_utf8("content_sid", r->content_sid, msg, len) ||
        validate_utf8("idempotency_key", r->idempotency_key, msg, len))
        return -1;
    if (validate_e164("to", r->to, msg, len))
        return -1;
    int freeform = *r->body || r->n_media_urls > 0;
    if (*r->content_sid && freeform) {
        snprintf(msg, len, "content_sid: a template cannot be combined with body or media_urls");
        return -1;
    }
    if (!*r->content_sid && !freeform) {
        snprintf(msg, len, "body, media_urls or content_sid: one is required");
        return -1;
    }
    if (*r->content_sid && validate_sid("content_sid", r->content_sid, "HX", msg, len))
        return -1;
    if (!*r->content_sid && r->n_content_variables) {
        snprintf(msg, len, "content_variables: only with content_sid");
        return -1;
    }
    size_t chars = text_utf8_chars(r->body, strlen(r->body));
    if (chars > (size_t)cfg->whatsapp_max_body) {
        snprintf(msg, len, "body: at most %d characters, got %zu", cfg->whatsapp_max_body, chars);
        return -1;
    }
    if (r->n_media_urls > MAX_MEDIA) {
        snprintf(msg, len, "media_urls: at most %d", MAX_MEDIA);
        return -1;
    }
    for (size_t i = 0; i < r->n_media_urls; i++) {
        if (validate_utf8("media_urls", r->media_urls[i], msg, len))
            return -1;
        if (!text_is_https_url(r->media_urls[i])) {
            snprintf(msg, len, "media_urls[%zu]: must be an https:// URL", i);
            return -1;
        }
    }
    for (size_t i = 0; i < r->n_content_variables; i++)
        if (validate_utf8("content_variables", r->content_variables[i]->key, msg, len) ||
            validate_utf8("content_variables", r->content_variables[i]->value, msg, len))
            return -1;
    return validate_idempotency_key(r->idempotency_key, msg, len);
}

static int build_form(struct flow *f, const Commsgate__V1__SendWhatsAppRequest *r)
{
    const struct config *cfg = f->app->cfg;
    char buf[32768], to[40], from[40], callback[600];
    struct form form;
    char *vars = NULL;

    snprintf(to, sizeof(to), "whatsapp:%s", r->to);
    snprintf(from, sizeof(from), "whatsapp:%s", cfg->whatsapp_number);
    flow_status_callback(f, "/webhooks/twilio/messages/status", callback, sizeof(callback));
    form_init(&form, buf, sizeof(buf));
    form_add(&form, "To", to);
    form_add(&form, "From", from);
    if (*r->content_sid) {
        json_t *obj = json_object();
        for (size_t i = 0; obj && i < r->n_content_variables; i++)
            json_object_set_new(obj, r->content_variables[i]->key,
                                json_string(r->content_variables[i]->value));
        vars = obj ? json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(obj);
        if (!vars)
            return -1;
        form_add(&form, "ContentSid", r->content_sid);
        if (r->n_content_variables)
            form_add(&form, "ContentVariables", vars);
        free(vars);
    } else {
        if (*r->body)
            form_add(&form, "Body", r->body);
        for (size_t i = 0; i < r->n_media_urls; i++)
            form_add(&form, "MediaUrl", r->media_urls[i]);
    }
    form_add(&form, "StatusCallback", callback);
    return flow_set_form(f, &form) ? -1 : 0;
}

static int prepare(struct flow *f, const ProtobufCMessage *msg, const uint8_t *raw,
                   size_t raw_len, struct rpc_error *err)
{
    const Commsgate__V1__SendWhatsAppRequest *r = (const Commsgate__V1__SendWhatsAppRequest *)msg;

    if (check(r, f->app->cfg, f->errmsg, sizeof(f->errmsg)))
        return -1;
    if (!f->app->cfg->whatsapp_number[0]) {
        err->code = GRPC_STATUS_FAILED_PRECONDITION;
        snprintf(f->errmsg, sizeof(f->errmsg), "TWILIO_WHATSAPP_NUMBER is not configured");
        return -1;
    }
    f->u.is_template = *r->content_sid != '\0';
    f->cost = 1;
    /* WhatsApp has its own opt-out handling at Meta; the SMS STOP list does
     * not apply. Free-form needs the window. */
    f->needs_window = !f->u.is_template;
    snprintf(f->to, sizeof(f->to), "%s", r->to);
    flow_set_idempotency(f, r->idempotency_key, raw, raw_len);
    if (build_form(f, r)) {
        err->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(f->errmsg, sizeof(f->errmsg), "request too large");
        return -1;
    }
    return 0;
}

static void on_call(struct rpc_call *call, const uint8_t *req, size_t len)
{
    flow_handle(call, req, len, &whatsapp_kind, &commsgate__v1__send_whats_app_request__descriptor,
                prepare);
}

void rpc_whatsapp_method(struct rpc_method *m)
{
    m->on_call = on_call;
}
