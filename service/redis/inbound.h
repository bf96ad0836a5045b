/* An inbound SMS or WhatsApp message (scripts/inbound.lua): its keyword
 * (STOP puts the sender on the opt-out list send_policy.c checks, START
 * takes it off, HELP is recorded), and the WhatsApp window it opens. Applied
 * once per message. Loop thread only, but inbound_keyword. */
#ifndef COMMSGATE_REDIS_INBOUND_H
#define COMMSGATE_REDIS_INBOUND_H

#include "redis/policy.h"


struct config;
struct redis_ctx;

enum inbound_keyword { INBOUND_NONE, INBOUND_STOP, INBOUND_START, INBOUND_HELP };

/* The keyword of a message: the whole body (len bytes; one holding a NUL is
 * no keyword), trimmed, any case, from Twilio's default lists; or Twilio's
 * OptOutType when Advanced Opt-Out sets it. Either may be NULL. Any
 * thread. */
enum inbound_keyword inbound_keyword(const char *body, size_t len, const char *opt_out_type);
/* "stop", "start", "help" or "". */
const char *inbound_keyword_name(enum inbound_keyword k);

/* Applies one inbound message from `number` (E.164, no whatsapp:);
 * event_key marks it applied (keys_make KEYS_INBOUND). fn gets the reply:
 * read it with policy_applied. CG_EREDIS at once when Redis is down. */
int inbound_apply(struct redis_ctx *r, const struct config *cfg, const char *number,
                  const char *event_key, enum inbound_keyword kw, int whatsapp,
                  policy_reply_fn *fn, void *privdata);

#endif
