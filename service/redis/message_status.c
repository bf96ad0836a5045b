/* The message status record: its rank table, message_status.lua, the read. */
#include "redis/message_status.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "redis/keys.h"
#include "redis/redis.h"

/* How far along each status is; a status never replaces one of equal or
 * higher rank, since callbacks arrive out of order. */
static const struct {
    const char *name;
    int rank;
} statuses[MESSAGE_STATUS_COUNT] = {
    {"accepted", 0},  {"scheduled", 0}, {"queued", 1},      {"sending", 2},  {"sent", 3},
    {"receiving", 3}, {"received", 4},  {"delivered", 4},   {"undelivered", 4},
    {"failed", 4},    {"canceled", 4},  {"partially_delivered", 4}, {"read", 5},
};

int message_status_index(const char *status)
{
    for (int i = 0; status && i < MESSAGE_STATUS_COUNT; i++)
        if (strcmp(statuses[i].name, status) == 0)
            return i;
    return -1;
}

const char *message_status_name(int index)
{
    return index >= 0 && index < MESSAGE_STATUS_COUNT ? statuses[index].name : NULL;
}

int message_status_apply(struct redis_ctx *r, const char *sid, const char *status,
                         const char *error_code, const char *event_key, policy_reply_fn *fn,
                         void *privdata)
{
    char key[KEYS_MAX], rank[12], keep[16];
    int i = message_status_index(status);

    if (i < 0 || keys_make(key, sizeof(key), KEYS_MESSAGE, sid, NULL))
        return CG_EINVAL;
    snprintf(rank, sizeof(rank), "%d", statuses[i].rank);
    snprintf(keep, sizeof(keep), "%d", MESSAGE_STATUS_KEEP_S);
    const char *keys[] = {key, event_key};
    const char *args[] = {status, rank, error_code ? error_code : "", keep};
    return policy_eval(r, POLICY_MESSAGE_STATUS, 2, keys, 4, args, fn, privdata);
}

void message_status_first(struct redis_ctx *r, const char *sid, const char *status)
{
    char event[KEYS_MAX];
    int rc = keys_make(event, sizeof(event), KEYS_EVENT, sid, status) ? CG_EINVAL
             : message_status_apply(r, sid, status, "", event, redis_on_write,
                                    (void *)"message status");
    if (rc)
        log_warn("redis_write_skipped", "first status '%s' of %s not recorded: %s", status, sid,
                 error_message(rc));
}

static void on_hash(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct message_status_get_req *req = privdata;
    const redisReply *r = reply;
    struct message_status_record rec = {.status = ""};

    if (!r || r->type != REDIS_REPLY_ARRAY) {
        req->done(req, -1, NULL);
        return;
    }
    if (r->elements == 0) {
        req->done(req, 0, NULL);
        return;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
        if (!k || !v)
            continue;
        if (strcmp(k, "status") == 0)
            rec.status = v;
        else if (strcmp(k, "error_code") == 0)
            rec.error_code = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(k, "updated_at") == 0)
            rec.updated_at_ms = strtoll(v, NULL, 10);
    }
    req->done(req, 1, &rec);
}

int message_status_get(struct redis_ctx *r, const char *sid, struct message_status_get_req *req)
{
    char key[KEYS_MAX];
    if (keys_make(key, sizeof(key), KEYS_MESSAGE, sid, NULL))
        return CG_EINVAL;
    const char *argv[] = {"HGETALL", key};
    return redis_command_argv(r, on_hash, req, 2, argv, NULL);
}
