/* caller_quota.lua: a caller's own quotas (auth/callers.h), reserved in the
 * decision's round trip and given back when nothing was sent. Loop thread. */
#ifndef COMMSGATE_REDIS_CALLER_QUOTA_H
#define COMMSGATE_REDIS_CALLER_QUOTA_H

#include "redis/policy.h"

struct caller;
struct redis_ctx;

/* What an RPC spends of its caller's quotas. */
enum caller_spend { CALLER_SPEND_NONE, CALLER_SPEND_MESSAGE, CALLER_SPEND_VERIFICATION };

/* Whether caller has any quota this spend counts against. */
int caller_quota_applies(const struct caller *caller, enum caller_spend spend);
/* Reserves a place in each of them for id; req->done gets POLICY_GO, or
 * POLICY_REFUSE with reason CALLER_QUOTA_EXHAUSTED, ms until a place frees
 * and which quota in res->which. CG_EREDIS at once when Redis is down. */
int caller_quota_take(struct redis_ctx *r, const struct caller *caller, enum caller_spend spend,
                      const char *id, struct policy_req *req);
/* Nothing was sent: the places go back. */
void caller_quota_give_back(struct redis_ctx *r, const struct caller *caller,
                            enum caller_spend spend, const char *id);

#endif
