/* The recipient's send policy for SendSMS, SendWhatsApp and PlaceCall
 * (scripts/send.lua): the opt-out list (read here, written here on Twilio's
 * 21610 and by inbound.c on STOP and START) and the WhatsApp 24-hour window
 * (read here, closed here on Twilio's 63016, opened by inbound.c). The
 * idempotency record is idempotency.c's. Loop thread only. */
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
};

/* One send.lua: GO, or REFUSE (REASON_OPTED_OUT, or
 * REASON_WHATSAPP_WINDOW_CLOSED with ms). Same returns as policy_run. */
int send_policy_check(struct redis_ctx *r, const struct config *cfg,
                      const struct send_policy_args *a, struct policy_req *req);

/* Fire-and-forget writes (a failure is logged). */
/* Twilio said 21610: `to` replied STOP. */
void send_policy_opt_out(struct redis_ctx *r, const struct config *cfg, const char *to);
/* Twilio said 63016: the window with `to` is closed whatever we knew. */
void send_policy_close_window(struct redis_ctx *r, const char *to);

#endif
