/* A message's delivery status (scripts/message_status.lua): written when
 * Twilio accepts a send (its first status: Twilio sends no callback for
 * it) and by each status callback, applied once per event and never moved
 * backwards; read by GetMessage. The rank table lives here only. Loop
 * thread only, but for the status table. */
#ifndef COMMSGATE_REDIS_MESSAGE_STATUS_H
#define COMMSGATE_REDIS_MESSAGE_STATUS_H

#include <stdint.h>

#include "redis/policy.h"

struct redis_ctx;

#define MESSAGE_STATUS_COUNT 13
/* Message statuses and records keep this long: 7 days. */
#define MESSAGE_STATUS_KEEP_S 604800

/* The index of a Twilio message status (0 .. MESSAGE_STATUS_COUNT - 1), or
 * -1 for one Twilio does not define; and back. Any thread. */
int message_status_index(const char *status);
const char *message_status_name(int index);

/* Applies one status event to message `sid`; event_key marks the event
 * applied (keys_make KEYS_EVENT). fn gets the reply: read it with
 * policy_applied. CG_EREDIS at once when Redis is down (fn not called),
 * CG_EINVAL for an unknown status. */
int message_status_apply(struct redis_ctx *r, const char *sid, const char *status,
                         const char *error_code, const char *event_key, policy_reply_fn *fn,
                         void *privdata);
/* Twilio accepted message `sid` with `status`: its first status, as if it
 * were the first callback. Fire-and-forget. */
void message_status_first(struct redis_ctx *r, const char *sid, const char *status);

struct message_status_record {
    const char *status;   /* "" if none; borrowed for the callback */
    uint32_t error_code;
    int64_t updated_at_ms;
};
struct message_status_get_req;
/* found: 1 with rec, 0 unknown (or expired), -1 Redis failed. */
typedef void message_status_get_fn(struct message_status_get_req *req, int found,
                                   const struct message_status_record *rec);
/* Caller-owned until done runs. */
struct message_status_get_req {
    message_status_get_fn *done;
    void *data;
};
/* The stored status of `sid`. CG_EREDIS at once when Redis is down (done
 * not called). */
int message_status_get(struct redis_ctx *r, const char *sid, struct message_status_get_req *req);

#endif
