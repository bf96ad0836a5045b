/* The verification limits, stricter than Twilio's and shared by every
 * replica: codes sent per number per window with a cool-down between them
 * (scripts/verify_start.lua: a place is reserved before Twilio is asked and
 * given back if Twilio did not send), and checks per number per window,
 * counted whatever their outcome (scripts/verify_check.lua). Loop thread
 * only. */
#ifndef COMMSGATE_REDIS_VERIFY_LIMITS_H
#define COMMSGATE_REDIS_VERIFY_LIMITS_H

#include "redis/policy.h"

struct config;
struct redis_ctx;

/* GO (a place reserved under `id`), or REFUSE with REASON_VERIFY_COOLDOWN
 * or REASON_VERIFY_SEND_LIMIT and the wait in ms. Same returns as
 * policy_run. */
int verify_limits_start(struct redis_ctx *r, const struct config *cfg, const char *to,
                        const char *id, struct policy_req *req);
/* Twilio did not send: the place reserved under `id` goes back
 * (fire-and-forget). */
void verify_limits_give_back(struct redis_ctx *r, const char *to, const char *id);

/* GO (the check counted), or REFUSE with REASON_VERIFY_CHECK_LIMIT and the
 * wait in ms. */
int verify_limits_check(struct redis_ctx *r, const struct config *cfg, const char *to,
                        const char *id, struct policy_req *req);

#endif
