/* The recipient's send policy for SendSMS, SendWhatsApp and PlaceCall, and
 * the idempotency record it guards (scripts/send.lua): the opt-out list
 * (read here, written here on Twilio's 21610 and by inbound.c on STOP and
 * START), the WhatsApp 24-hour window (read here, closed here on Twilio's
 * 63016, opened by inbound.c), and the record of each idempotency key
 * (claimed by send.lua, settled or dropped here). Loop thread only. */
#ifndef COMMSGATE_REDIS_SEND_POLICY_H
#define COMMSGATE_REDIS_SEND_POLICY_H

#include <stddef.h>

#include "redis/policy.h"

struct config;
struct redis_ctx;

struct send_policy_args {
    const char *to;   /* the recipient, as its keys name it (no whatsapp:) */
    int check_optout; /* refuse opted-out recipients (SMS) */
    int needs_window; /* free-form WhatsApp: the window must be open */
    const char *idem; /* the idempotency record's key, "" for none */
    const char *fp;   /* the request's fingerprint, with idem */
};

/* The idempotency record's key for `key` sent by `caller` to `to` through
 * `rpc`; 0, or -1 if it does not fit (KEYS_MAX). Any thread. */
int send_policy_idem_key(char *out, size_t cap, const char *to, const char *rpc,
                         const char *caller, const char *key);

/* One send.lua: GO (the key, if any, is claimed), REFUSE (REASON_OPTED_OUT,
 * REASON_WHATSAPP_WINDOW_CLOSED with ms, REASON_IDEMPOTENCY_KEY_REUSED),
 * REPEAT with the stored answer, or IN_FLIGHT. Same returns as policy_run. */
int send_policy_check(struct redis_ctx *r, const struct config *cfg,
                      const struct send_policy_args *a, struct policy_req *req);

/* Fire-and-forget writes (a failure is logged). */
/* Twilio said 21610: `to` replied STOP. */
void send_policy_opt_out(struct redis_ctx *r, const struct config *cfg, const char *to);
/* Twilio said 63016: the window with `to` is closed whatever we knew. */
void send_policy_close_window(struct redis_ctx *r, const char *to);
/* The claimed key's answer, replayed to every repeat for its lifetime. */
void send_policy_settle(struct redis_ctx *r, const struct config *cfg, const char *idem,
                        const struct policy_outcome *o);
/* Nothing was sent: forget the claim, so a repeat may send. */
void send_policy_drop_claim(struct redis_ctx *r, const char *idem);

#endif
