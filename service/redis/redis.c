/* hiredis async on libevent. hiredis 0.14 has no command timeouts, so a
 * periodic PING doubles as the timeout: a connection that leaves it
 * unanswered too long, while no reply queued ahead of it arrives either, is
 * dropped, which fails every pending command. A burst can queue thousands of
 * commands ahead of the PING; they are answered in order, so replies still
 * coming mean Redis is alive, only busy. */
#include "redis/redis.h"

#include <event2/event.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pthread.h>

#include "core/error.h"
#include "core/log.h"
#include "loop/loop.h"
#include "redis/cluster.h"
#include "redis/dial.h"
#include "redis/sentinel.h"

/* DISCOVERING: asking the sentinels where the master is (sentinel mode). */
enum conn_state { CONN_IDLE, CONN_DISCOVERING, CONN_RESOLVING, CONN_CONNECTING, CONN_READY };

struct redis_ctx {
    struct event_base *base;
    struct redis_dialer *dialer;
    struct redis_dial *dial; /* while the server's name resolves */
    struct sentinel *sentinel; /* REDIS_URL=redis-sentinel://; NULL: one node */
    struct cluster *cluster;   /* REDIS_URL=redis-cluster://: all the rest is its */
    int not_master; /* ROLE said replica: this connection must not serve */
    atomic_ulong master_changes; /* read by /metrics on another loop */
    atomic_int no_master;
    atomic_ulong commands;
    atomic_int up_seen;       /* up, as /metrics reads it */
    pthread_mutex_t addr_mu;  /* addr: rewritten when the sentinels move the master */
    char addr[272];
    struct event *tick;
    struct redis_opts opts;
    struct config_redis server;

    redisAsyncContext *ac;
    enum conn_state state;
    int up;
    int ping_outstanding;
    /* The oldest command still waiting for its reply, and when that last
     * changed. Every command queued before the PING is ahead of it, and one
     * queued after cannot be at the head while the PING waits, so a new head
     * always means replies arrived. */
    const void *oldest;
    long long progress_ms;
    int failures; /* consecutive failed attempts, to log the first only */
    /* redis_after_writes: this turn's waiters, and the event that sends
     * their PING at the end of the turn. */
    struct redis_waiter *waiters;
    struct event *barrier;
    int barrier_armed;
    /* A WAIT is out: Redis runs nothing else of this connection's until it
     * returns, so the next turns' waiters share the next one, sent when it
     * does. One WAIT each turn would queue up behind each other, each as
     * long as the timeout when replicas lag: a backlog without end. */
    int wait_out;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* r->addr from r->server, for /metrics on another thread. */
static void set_addr(struct redis_ctx *r)
{
    pthread_mutex_lock(&r->addr_mu);
    snprintf(r->addr, sizeof(r->addr), "%s:%d", r->server.host, r->server.port);
    pthread_mutex_unlock(&r->addr_mu);
}

static void set_up(struct redis_ctx *r, int up, const char *why)
{
    if (r->up == up)
        return;
    r->up = up;
    atomic_store(&r->up_seen, up);
    if (up)
        log_event(LOG_LEVEL_INFO, "redis_up",
                  json_pack("{s:s, s:i, s:i}", "host", r->server.host, "port", r->server.port,
                            "db", r->server.db));
    else
        log_event(LOG_LEVEL_WARN, "redis_down",
                  json_pack("{s:s, s:i, s:s}", "host", r->server.host, "port", r->server.port,
                            "reason", why));
    if (r->opts.on_health)
        r->opts.on_health(up, r->opts.health_data);
}

static void note_failure(struct redis_ctx *r, const char *why)
{
    if (r->failures++ == 0 && !r->up)
        log_event(LOG_LEVEL_WARN, "redis_connect_failed",
                  json_pack("{s:s, s:i, s:s}", "host", r->server.host, "port", r->server.port,
                            "reason", why));
    set_up(r, 0, why);
}

/* Drops the connection from outside hiredis callbacks. */
static void drop(struct redis_ctx *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    r->ac = NULL; /* so on_disconnect knows it was us */
    r->state = CONN_IDLE;
    r->ping_outstanding = 0;
    note_failure(r, why);
    if (ac)
        redisAsyncFree(ac);
}

static void on_ping(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_ctx *r = privdata;
    redisReply *rep = reply;

    if (ac != r->ac)
        return; /* a connection we already dropped */
    r->ping_outstanding = 0;
    if (!rep) {
        return; /* disconnect callback reports it */
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        /* Wrong password or db, or a loading/busy server: not usable. */
        log_event(LOG_LEVEL_WARN, "redis_error", json_pack("{s:s}", "reply", rep->str));
        set_up(r, 0, "error reply to PING");
        return;
    }
    if (r->not_master)
        return; /* it answers, but it is a replica: on_role drops it */
    r->failures = 0;
    set_up(r, 1, NULL);
}

/* Sentinel mode: the node must say it is the master, on each connection and
 * at each ping, since a master the sentinels demoted (SENTINEL FAILOVER, or
 * a partition healed) stays up and answers, as a replica. */
static void on_role(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_ctx *r = privdata;
    const redisReply *rep = reply;

    if (ac != r->ac || !rep)
        return;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
        rep->element[0]->type == REDIS_REPLY_STRING && strcmp(rep->element[0]->str, "master") == 0)
        return;
    r->not_master = 1;
    set_up(r, 0, "not the master (its ROLE says otherwise)");
    redisAsyncDisconnect(ac); /* on_disconnect asks the sentinels again */
}

static void send_ping(struct redis_ctx *r)
{
    if (r->sentinel)
        redisAsyncCommand(r->ac, on_role, r, "ROLE");
    if (redisAsyncCommand(r->ac, on_ping, r, "PING") == REDIS_OK) {
        r->ping_outstanding = 1;
        r->progress_ms = now_ms();
        r->oldest = r->ac->replies.head;
    }
}

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_ctx *r = privdata;
    redisReply *rep = reply;
    if (ac == r->ac && rep && rep->type == REDIS_REPLY_ERROR)
        log_event(LOG_LEVEL_ERROR, "redis_auth_failed",
                  json_pack("{s:s, s:s}", "reply", rep->str, "hint",
                            "check the password and db in REDIS_URL"));
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_ctx *r = ac->data;

    if (ac != r->ac)
        return;
    if (status != REDIS_OK) {
        r->ac = NULL; /* hiredis frees it after this callback */
        r->state = CONN_IDLE;
        note_failure(r, ac->errstr);
        return;
    }
    r->state = CONN_READY;
    r->not_master = 0;
    /* AUTH and SELECT are pipelined ahead of the first PING: Redis answers in
     * order, so the PING only succeeds if both did. */
    if (r->server.password[0]) {
        if (r->server.user[0])
            redisAsyncCommand(r->ac, on_setup_reply, r, "AUTH %s %s", r->server.user,
                              r->server.password);
        else
            redisAsyncCommand(r->ac, on_setup_reply, r, "AUTH %s", r->server.password);
    }
    if (r->server.db)
        redisAsyncCommand(r->ac, on_setup_reply, r, "SELECT %d", r->server.db);
    if (r->opts.on_connect)
        r->opts.on_connect(r->ac, r->opts.connect_data);
    send_ping(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_ctx *r = ac->data;
    if (ac != r->ac)
        return;
    r->ac = NULL; /* hiredis frees it after this callback */
    r->state = CONN_IDLE;
    r->ping_outstanding = 0;
    note_failure(r, status == REDIS_OK ? "connection closed" : ac->errstr);
}

static void on_dialed(redisAsyncContext *ac, const char *why, void *data)
{
    struct redis_ctx *r = data;

    r->state = CONN_IDLE;
    if (!ac) {
        note_failure(r, why);
        return;
    }
    ac->data = r;
    r->ac = ac;
    r->state = CONN_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void start_connect(struct redis_ctx *r)
{
    r->state = CONN_RESOLVING;
    redis_dial(r->dialer, r->server.host, r->server.port, on_dialed, r, &r->dial);
}

static void on_master(const char *host, int port, const char *why, void *data)
{
    struct redis_ctx *r = data;

    r->state = CONN_IDLE;
    int was = atomic_exchange(&r->no_master, host == NULL);
    if (!host) {
        char msg[800];
        snprintf(msg, sizeof(msg), "no master: no sentinel named one for %s (%s)",
                 r->server.master_name, why ? why : "no sentinel answered");
        if (!was) /* once, as it starts: redis_down may have been said already */
            log_event(LOG_LEVEL_ERROR, "redis_no_master", json_pack("{s:s}", "reason", msg));
        note_failure(r, msg);
        return;
    }
    if (strcmp(host, r->server.host) || port != r->server.port) {
        log_event(LOG_LEVEL_INFO, "redis_master",
                  json_pack("{s:s, s:s, s:i}", "master", r->server.master_name, "host", host,
                            "port", port));
        if (r->server.host[0])
            atomic_fetch_add(&r->master_changes, 1); /* not the first one found */
        snprintf(r->server.host, sizeof(r->server.host), "%s", host);
        r->server.port = port;
        set_addr(r);
    }
    start_connect(r);
}

/* Connects to the node REDIS_URL names, or first asks the sentinels. */
static void start(struct redis_ctx *r)
{
    if (!r->sentinel) {
        start_connect(r);
        return;
    }
    r->state = CONN_DISCOVERING;
    sentinel_ask(r->sentinel);
}

/* Asked again rather than taking the address from the message: the
 * sentinels' answer is the one that counts, and ROLE checks it. */
static void on_switch(void *data)
{
    struct redis_ctx *r = data;
    /* Whatever this connection is doing, it is to the old master now. */
    if (r->state == CONN_READY || r->state == CONN_CONNECTING)
        drop(r, "the sentinels switched the master");
    if (r->state == CONN_IDLE)
        start(r); /* ask at once rather than at the next tick */
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct redis_ctx *r = arg;

    switch (r->state) {
    case CONN_IDLE:
        start(r);
        break;
    case CONN_DISCOVERING: /* the sentinel client keeps its own deadline */
    case CONN_RESOLVING:
    case CONN_CONNECTING:
        break;
    case CONN_READY:
        if (!r->ping_outstanding) {
            send_ping(r);
            break;
        }
        if (r->ac->replies.head == r->oldest &&
            now_ms() - r->progress_ms > r->opts.timeout_ms) {
            /* Before judging, read what is waiting: a loop kept busy for
             * longer than the timeout (a burst of work in this very turn)
             * runs this tick before the read event the replies raised, and
             * a healthy Redis would be dropped for the loop's lateness. */
            redisAsyncHandleRead(r->ac);
            if (r->state != CONN_READY || !r->ac)
                break; /* the read found the connection gone */
            if (!r->ping_outstanding || r->ac->replies.head != r->oldest) {
                r->oldest = r->ac->replies.head;
                r->progress_ms = now_ms();
                break;
            }
            drop(r, "no reply within COMMSGATE_REDIS_TIMEOUT_MS");
            break;
        }
        if (r->ac->replies.head != r->oldest) {
            r->oldest = r->ac->replies.head;
            r->progress_ms = now_ms();
        }
        break;
    }
}

static void tell_waiters(struct redis_waiter *w, int ok)
{
    while (w) {
        struct redis_waiter *next = w->next;
        w->done(w, ok); /* may free w */
        w = next;
    }
}

static void on_barrier_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_waiter *batch = privdata;
    const redisReply *rep = reply;
    struct redis_ctx *r = ac->data;
    int ok = rep && rep->type != REDIS_REPLY_ERROR;

    if (r->opts.wait_replicas > 0) {
        r->wait_out = 0;
        if (r->waiters && r->barrier && !r->barrier_armed) { /* the turns it held up */
            r->barrier_armed = 1;
            event_active(r->barrier, EV_TIMEOUT, 0);
        }
    }
    if (ok && rep->type == REDIS_REPLY_INTEGER && rep->integer < r->opts.wait_replicas) {
        ok = 0; /* WAIT ran out of time with too few replicas */
        log_event(LOG_LEVEL_WARN, "redis_wait_short",
                  json_pack("{s:I, s:i, s:i}", "replicas", (json_int_t)rep->integer, "wanted",
                            r->opts.wait_replicas, "timeout_ms", r->opts.wait_timeout_ms));
    }
    tell_waiters(batch, ok);
}

/* End of the loop turn: one PING (or WAIT) behind everything the turn
 * queued. */
static void on_barrier(evutil_socket_t fd, short what, void *arg)
{
    struct redis_ctx *r = arg;
    struct redis_waiter *batch = r->waiters;
    char n[16], ms[16];
    const char *ping[] = {"PING"}, *wait[] = {"WAIT", n, ms};
    (void)fd;
    (void)what;
    r->barrier_armed = 0;
    if (r->wait_out)
        return; /* on_barrier_reply sends theirs */
    r->waiters = NULL;
    if (!batch)
        return;
    snprintf(n, sizeof(n), "%d", r->opts.wait_replicas);
    snprintf(ms, sizeof(ms), "%d", r->opts.wait_timeout_ms);
    int rc = r->opts.wait_replicas > 0
                 ? redis_command_argv(r, on_barrier_reply, batch, 3, wait, NULL)
                 : redis_command_argv(r, on_barrier_reply, batch, 1, ping, NULL);
    if (rc)
        tell_waiters(batch, 0); /* Redis is down: the writes failed too */
    else if (r->opts.wait_replicas > 0)
        r->wait_out = 1;
}

void redis_after_writes(struct redis_ctx *r, struct redis_waiter *w)
{
    LOOP_ASSERT_OWNER(r->base);
    if (r->cluster) {
        cluster_after_writes(r->cluster, w);
        return;
    }
    w->next = r->waiters;
    r->waiters = w;
    if (!r->barrier)
        return; /* redis_free is under way (a failed command's callback): it tells w */
    if (!r->barrier_armed) {
        r->barrier_armed = 1;
        event_active(r->barrier, EV_TIMEOUT, 0);
    }
}

int redis_new(struct event_base *base, const struct redis_opts *opts, struct redis_ctx **out)
{
    struct redis_ctx *r = calloc(1, sizeof(*r));
    if (!r)
        return CG_ENOMEM;
    r->base = base;
    r->opts = *opts;
    r->server = *opts->server;
    r->opts.server = &r->server;
    pthread_mutex_init(&r->addr_mu, NULL);
    set_addr(r);
    if (r->server.nseeds) {
        int rc = cluster_new(base, &r->opts, &r->cluster);
        if (rc) {
            pthread_mutex_destroy(&r->addr_mu);
            free(r);
            return rc;
        }
        *out = r;
        return CG_OK;
    }
    r->tick = event_new(base, -1, EV_PERSIST, on_tick, r);
    r->barrier = event_new(base, -1, 0, on_barrier, r);
    r->dialer = redis_dialer_new(base);
    if (!r->tick || !r->barrier || !r->dialer) {
        redis_free(&r);
        return CG_ENOMEM;
    }
    if (r->server.nsentinels) {
        struct sentinel_opts so = {.cfg = &r->server,
                                   .timeout_ms = opts->timeout_ms,
                                   .on_master = on_master,
                                   .on_switch = on_switch,
                                   .data = r};
        int rc = sentinel_new(base, r->dialer, &so, &r->sentinel);
        if (rc) {
            redis_free(&r);
            return rc;
        }
    }
    *out = r;
    return CG_OK;
}

int redis_start(struct redis_ctx *r)
{
    LOOP_ASSERT_OWNER(r->base);
    if (r->cluster)
        return cluster_start(r->cluster);
    struct timeval tv = {r->opts.ping_interval_ms / 1000,
                         (r->opts.ping_interval_ms % 1000) * 1000};
    if (event_add(r->tick, &tv))
        return CG_ESYS;
    start(r);
    return CG_OK;
}

void redis_counts(const struct redis_ctx *r, struct redis_counts *out)
{
    if (r->cluster) {
        cluster_counts(r->cluster, out);
        return;
    }
    out->master_changes = atomic_load(&r->master_changes);
    out->no_master = atomic_load(&r->no_master);
}

int redis_nodes(const struct redis_ctx *r, struct redis_node_stat *out, int max)
{
    if (r->cluster)
        return cluster_nodes(r->cluster, out, max);
    struct redis_node_stat s;
    /* The lock is not the connection's state: taking it changes nothing a
     * const reader could see. */
    pthread_mutex_lock((pthread_mutex_t *)&r->addr_mu);
    memcpy(s.addr, r->addr, sizeof(s.addr));
    pthread_mutex_unlock((pthread_mutex_t *)&r->addr_mu);
    if (s.addr[0] == ':')
        return 0; /* no master named yet */
    if (max < 1)
        return 1;
    memcpy(out->addr, s.addr, sizeof(out->addr));
    out->up = atomic_load(&r->up_seen);
    out->commands = atomic_load(&r->commands);
    out->redirects = 0;
    return 1;
}

int redis_is_up(const struct redis_ctx *r)
{
    if (r->cluster)
        return cluster_is_up(r->cluster);
    return r->up && r->ac != NULL;
}

int redis_command_argv(struct redis_ctx *r, redisCallbackFn *fn, void *privdata, int argc,
                       const char **argv, const size_t *argvlen)
{
    LOOP_ASSERT_OWNER(r->base);
    if (r->cluster)
        return cluster_command_argv(r->cluster, fn, privdata, argc, argv, argvlen);
    if (!redis_is_up(r))
        return CG_EREDIS;
    if (redisAsyncCommandArgv(r->ac, fn, privdata, argc, argv, argvlen) != REDIS_OK)
        return CG_EREDIS;
    atomic_fetch_add_explicit(&r->commands, 1, memory_order_relaxed);
    return CG_OK;
}

void redis_on_write(redisAsyncContext *ac, void *reply, void *what)
{
    const redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_event(LOG_LEVEL_WARN, "redis_write_failed",
                  json_pack("{s:s, s:s}", "what", (const char *)what, "reply", r->str));
}

void redis_free(struct redis_ctx **rp)
{
    struct redis_ctx *r = *rp;
    if (!r)
        return;
    cluster_free(&r->cluster);
    if (r->tick)
        event_free(r->tick);
    if (r->barrier)
        event_free(r->barrier);
    r->barrier = NULL; /* a WAIT failed below sends no more */
    redis_dial_cancel(&r->dial);
    sentinel_free(&r->sentinel); /* before the dialer its dials use */
    redis_dialer_free(&r->dialer);
    r->opts.on_health = NULL; /* nobody is listening any more */
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        redisAsyncFree(ac); /* a PING in flight tells its waiters */
    }
    while (r->waiters) { /* a waiter told may wait again */
        struct redis_waiter *unsent = r->waiters;
        r->waiters = NULL;
        tell_waiters(unsent, 0);
    }
    pthread_mutex_destroy(&r->addr_mu);
    free(r);
    *rp = NULL;
}
