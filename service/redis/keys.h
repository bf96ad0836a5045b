/* Every Redis key commsgate writes, in one place: the README's key table in
 * code. Keys about one recipient or one message carry it as a hash tag, so
 * Redis Cluster keeps each script's keys on one slot. Every key expires;
 * its lifetime is set by the module that owns the record. */
#ifndef COMMSGATE_REDIS_KEYS_H
#define COMMSGATE_REDIS_KEYS_H

#include <stddef.h>

#define KEYS_MAX 400

/*      record           suffix     owner                what */
#define KEYS_MAP(X)                                                                          \
    X(KEYS_OPTOUT,      "optout",  "send_policy, inbound", "opted out (STOP)")             \
    X(KEYS_WINDOW,      "wa",      "send_policy, inbound", "last inbound WhatsApp, unix ms") \
    X(KEYS_IDEMPOTENCY, "idem",    "idempotency",        "idempotency record; tag key:<caller>:<key>") \
    X(KEYS_VSEND,       "vsend",   "verify_limits",      "verification sends (zset)")      \
    X(KEYS_VCHECK,      "vcheck",  "verify_limits",      "verification checks (zset)")     \
    X(KEYS_MESSAGE,     "msg",     "message_status",     "a message's latest status (hash)") \
    X(KEYS_EVENT,       "ev:",     "message_status, webhook", "a status event applied, by its status") \
    X(KEYS_INBOUND,     "in:",     "inbound",            "an inbound message applied, by its SID") \
    X(KEYS_QUOTA,       "q:",      "caller_quota",       "a caller's reservations per quota (zset); tag caller:<name>")

enum keys_record {
#define KEYS_ENUM(v, suffix, owner, what) v,
    KEYS_MAP(KEYS_ENUM)
#undef KEYS_ENUM
    KEYS_RECORD_COUNT
};

/* The account's budget, shared by every replica (account.c). */
#define KEYS_ACCOUNT_TAT "cg:{account}:tat_us"
#define KEYS_ACCOUNT_LEASES "cg:{account}:leases"
#define KEYS_ACCOUNT_SPARE "cg:{account}:spare"
/* Unknown outcomes due for resolving, by due time (resolve_queue.c). */
#define KEYS_RESOLVE_QUEUE "cg:{resolve}:queue"
/* The events stream other services read (webhook/events.c). */
#define KEYS_EVENTS "cg:events"

/* Writes cg:{tag}:<suffix><rest> into out (cap bytes); rest is NULL for
 * records that are one per tag, else what names one of many (the suffix
 * ends in ':'). Returns 0, or -1 when it does not fit (out then holds "").
 * Any thread. */
int keys_make(char *out, size_t cap, enum keys_record record, const char *tag, const char *rest);

#endif
