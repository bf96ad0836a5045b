/* The Redis connection, owned by the loop thread: connects (and reconnects),
 * authenticates, selects the db, and pings so the service knows whether
 * Redis answers. Everything here runs on the loop thread. */
#ifndef COMMSGATE_REDIS_H
#define COMMSGATE_REDIS_H

#include <hiredis/async.h>
#include <stddef.h>

#include "core/config.h"

struct event_base;
struct redis_ctx;

/* Called on the loop thread each time Redis goes from answering to not
 * answering, or back. */
typedef void redis_health_fn(int up, void *data);

struct redis_opts {
    const struct config_redis *server;
    int ping_interval_ms;
    int timeout_ms;
    /* redis_after_writes: how many replicas must have the writes too (WAIT),
     * and for how long to wait; 0: the master having them is enough. */
    int wait_replicas;
    int wait_timeout_ms;
    redis_health_fn *on_health;
    void *health_data;
    /* Optional: called on each new connection, after AUTH and SELECT are
     * queued and before the first PING, to pipeline setup commands (such as
     * SCRIPT LOAD) directly on `ac`. */
    void (*on_connect)(redisAsyncContext *ac, void *data);
    void *connect_data;
};

int redis_new(struct event_base *base, const struct redis_opts *opts, struct redis_ctx **out);
/* Starts connecting; health is reported through on_health from then on. */
int redis_start(struct redis_ctx *r);
/* True while the last ping was answered. */
int redis_is_up(const struct redis_ctx *r);

/* Any thread (for /metrics and /readyz). */
struct redis_counts {
    unsigned long master_changes; /* sentinel mode: a new master address taken */
    int no_master;                /* sentinel mode: no sentinel names one now */
};
void redis_counts(const struct redis_ctx *r, struct redis_counts *out);

/* One Redis node a connection talks to, for /metrics. Any thread. */
struct redis_node_stat {
    char addr[272];          /* host:port */
    int up;                  /* its connection answers its pings */
    unsigned long commands;  /* sent to it (pings and WAITs of the health check apart) */
    unsigned long redirects; /* MOVED and ASK it answered (cluster) */
};
/* Fills out[0..max) and returns how many nodes there are: one node, or the
 * master the sentinels named last (counts run on across a switch), or every
 * node a cluster's map has named. */
int redis_nodes(const struct redis_ctx *r, struct redis_node_stat *out, int max);

/* Sends one command. When Redis is not answering, returns CG_EREDIS at once
 * and `fn` is never called (policies fail closed, and fast). Otherwise `fn`
 * is called exactly once, with reply NULL if the connection was lost; the
 * reply is hiredis's and is freed when `fn` returns. argv is copied. */
int redis_command_argv(struct redis_ctx *r, redisCallbackFn *fn, void *privdata, int argc,
                       const char **argv, const size_t *argvlen);

/* A redisCallbackFn for writes whose reply nobody waits for: an error reply
 * is logged (redis_write_failed) with privdata, a string literal saying what
 * the write was. */
void redis_on_write(redisAsyncContext *ac, void *reply, void *what);

/* Waiting until what was written is in Redis: a caller answered after its
 * send recorded an opt-out, a message's first status or an idempotency
 * record may ask again at once, on another loop's connection or another
 * replica's, and must find them. Commands on one connection run in order,
 * so the reply to a PING sent after them says they ran. With wait_replicas,
 * a WAIT takes the PING's place, so ok also says that many replicas have
 * them: what a failover to one of them cannot lose. */
struct redis_waiter {
    struct redis_waiter *next; /* redis.c's */
    /* ok: every command sent on this connection before the wait was
     * answered; 0: the connection was lost (they may or may not have run). */
    void (*done)(struct redis_waiter *w, int ok);
};

/* Loop thread. w->done is called once, later (never from inside this
 * call). The waiters of one loop turn share one PING, sent at the end of
 * the turn, after every command the turn queued. */
void redis_after_writes(struct redis_ctx *r, struct redis_waiter *w);

/* Drops the connection: pending commands' callbacks run with reply NULL,
 * and waiters are told (ok 0).
 * Clears *r; NULL is a no-op. */
void redis_free(struct redis_ctx **r);

#endif
