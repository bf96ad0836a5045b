/* Redis Cluster over single-node connections: the slot map, routing, and
 * the redirects a resharding or a failover gives. */
#include "redis/cluster.h"

#include <event2/event.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/error.h"
#include "core/log.h"
#include "loop/loop.h"

#define CLUSTER_SLOTS 16384
#define MAX_NODES 64
#define NO_NODE 0xff
/* A command sent on after this many redirects is answered with the last:
 * the map is moving faster than it can be followed. */
#define MAX_REDIRECTS 5
/* The map is asked for again this often when nothing prompts it, so nodes
 * added to the cluster are found. */
#define REFRESH_MS 5000
/* TRYAGAIN (a script's keys split by a slot being migrated) is tried again
 * this often, this many times: a slot's keys move in batches, each quick.
 * CLUSTERDOWN too: a cluster being joined, or past a failover, is soon ok. */
#define TRYAGAIN_MS 20
#define TRYAGAIN_MAX 50

struct node {
    struct cluster *c;
    struct redis_ctx *conn;
    struct config_redis server;
    int up;      /* its connection's last health */
    int written; /* commands sent on it since the last barrier */
    atomic_ulong redirects; /* MOVED and ASK it answered, for /metrics */
};

struct cluster {
    struct event_base *base;
    struct redis_opts opts; /* each node's, but health comes to on_node_health */
    struct config_redis server;
    struct node *nodes[MAX_NODES];
    int nnodes;
    atomic_int nnodes_seen; /* nnodes, published after each node is in place */
    uint8_t owner[CLUSTER_SLOTS]; /* index into nodes, or NO_NODE */
    int up;                       /* every slot has a master that answers */
    int state_ok;                 /* cluster_state:ok, and no CLUSTERDOWN since */
    int refreshing;               /* a CLUSTER SLOTS is out */
    int refresh_wanted;           /* a redirect or a lost master said the map moved */
    long long refreshed_ms;
    int dying;
    struct cmd *retrying; /* waiting out a TRYAGAIN or CLUSTERDOWN */
    struct event *tick;
    struct redis_waiter *waiters;
    struct event *barrier;
    int barrier_armed;
    atomic_ulong map_changes; /* read by /metrics on another loop */
    atomic_int no_master;
};

/* One command in flight, with its own copy of the arguments, so a redirect
 * can send it again. */
struct cmd {
    struct cluster *c;
    redisCallbackFn *fn;
    void *privdata;
    unsigned slot;
    struct node *at; /* sent to last */
    int redirects;
    int tries;    /* TRYAGAIN and CLUSTERDOWN answers */
    int reloaded; /* NOSCRIPT seen once: the scripts were loaded again */
    struct event *retry;
    struct cmd *prev, *next; /* in c->retrying while retry is pending */
    int argc;
    const char **argv;
    size_t *lens;
};

/* One barrier's waiters, told once every master's part answered. */
struct barrier {
    struct redis_waiter *waiters;
    int pending, ok;
    struct part {
        struct redis_waiter w; /* first: on_part casts back */
        struct barrier *b;
    } parts[];
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CRC16-CCITT (XMODEM), the cluster specification's key hash. */
static unsigned crc16(const char *buf, size_t len)
{
    unsigned crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned)(unsigned char)buf[i] << 8;
        for (int b = 0; b < 8; b++)
            crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
        crc &= 0xffff;
    }
    return crc;
}

unsigned cluster_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(open + 1, '}', len - from);
        if (close && close > open + 1) /* "{}" hashes the whole key */
            return crc16(open + 1, (size_t)(close - open - 1)) % CLUSTER_SLOTS;
    }
    return crc16(key, len) % CLUSTER_SLOTS;
}

static void refresh(struct cluster *c);

static void recompute(struct cluster *c)
{
    int up = c->nnodes > 0 && c->state_ok;
    for (unsigned s = 0; s < CLUSTER_SLOTS && up; s++)
        up = c->owner[s] != NO_NODE && c->nodes[c->owner[s]]->up;
    atomic_store(&c->no_master, !up);
    if (up == c->up)
        return;
    c->up = up;
    if (!up)
        c->refresh_wanted = 1;
    if (c->opts.on_health)
        c->opts.on_health(up, c->opts.health_data);
}

static void on_node_health(int up, void *data)
{
    struct node *n = data;
    n->up = up;
    if (!up)
        n->c->refresh_wanted = 1; /* a master lost: the cluster may promote */
    recompute(n->c);
    if (up && !n->c->up && !n->c->refreshing)
        refresh(n->c); /* a first node answers: the map at once, not at the tick */
}

/* The node at host:port, made (and connecting) if create and new. */
static int node_index(struct cluster *c, const char *host, int port, int create)
{
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i]->server.port == port && strcmp(c->nodes[i]->server.host, host) == 0)
            return i;
    if (!create || c->nnodes == MAX_NODES || strlen(host) >= sizeof(c->server.host))
        return -1;
    struct node *n = calloc(1, sizeof(*n));
    if (!n)
        return -1;
    n->c = c;
    n->server = c->server;
    n->server.nseeds = 0;
    snprintf(n->server.host, sizeof(n->server.host), "%s", host);
    n->server.port = port;
    struct redis_opts o = c->opts;
    o.server = &n->server;
    o.on_health = on_node_health;
    o.health_data = n;
    if (redis_new(c->base, &o, &n->conn) || redis_start(n->conn)) {
        redis_free(&n->conn);
        free(n);
        return -1;
    }
    c->nodes[c->nnodes] = n;
    atomic_store_explicit(&c->nnodes_seen, c->nnodes + 1, memory_order_release);
    return c->nnodes++;
}

/* --- the slot map --- */

static const redisReply *elem(const redisReply *r, size_t i, int type)
{
    return r && r->type == REDIS_REPLY_ARRAY && i < r->elements && r->element[i]->type == type
               ? r->element[i]
               : NULL;
}

static void on_slots(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct node *asked = privdata;
    struct cluster *c = asked->c;
    const redisReply *r = reply;
    uint8_t owner[CLUSTER_SLOTS];
    int masters = 0;

    c->refreshing = 0;
    if (c->dying || !r || r->type != REDIS_REPLY_ARRAY) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_event(LOG_LEVEL_WARN, "redis_cluster_map_failed",
                      json_pack("{s:s, s:i, s:s}", "host", asked->server.host, "port",
                                asked->server.port, "reply", r->str));
        return;
    }
    memset(owner, NO_NODE, sizeof(owner));
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *range = r->element[i];
        const redisReply *from = elem(range, 0, REDIS_REPLY_INTEGER);
        const redisReply *to = elem(range, 1, REDIS_REPLY_INTEGER);
        const redisReply *master = elem(range, 2, REDIS_REPLY_ARRAY);
        const redisReply *host = elem(master, 0, REDIS_REPLY_STRING);
        const redisReply *port = elem(master, 1, REDIS_REPLY_INTEGER);
        if (!from || !to || !host || !port || from->integer < 0 ||
            to->integer >= CLUSTER_SLOTS || from->integer > to->integer)
            continue;
        /* "?": the master is to be named by a hostname it has not yet
         * gossiped (cluster-preferred-endpoint-type hostname); the range
         * stays without a node until a later map names it. */
        if (host->len == 1 && host->str[0] == '?')
            continue;
        /* An empty host is the node that answered's own. */
        int n = node_index(c, host->len ? host->str : asked->server.host, (int)port->integer, 1);
        if (n < 0)
            continue;
        for (long long s = from->integer; s <= to->integer; s++)
            owner[s] = (uint8_t)n;
    }
    for (int n = 0; n < c->nnodes; n++)
        masters += memchr(owner, n, sizeof(owner)) != NULL;
    c->refresh_wanted = 0;
    c->refreshed_ms = now_ms();
    if (memcmp(owner, c->owner, sizeof(owner))) {
        memcpy(c->owner, owner, sizeof(owner));
        atomic_fetch_add(&c->map_changes, 1);
        log_event(LOG_LEVEL_INFO, "redis_cluster_map",
                  json_pack("{s:i, s:s, s:i}", "masters", masters, "from_host",
                            asked->server.host, "from_port", asked->server.port));
    }
    recompute(c);
}

/* The cluster's own word on its state, asked with each map: a full slot map
 * is not yet a cluster that serves (one being joined, or one waiting out a
 * failover, answers CLUSTERDOWN). Runs just before on_slots. */
static void on_info(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct node *asked = privdata;
    const redisReply *r = reply;
    (void)ac;
    if (asked->c->dying || !r)
        return;
    asked->c->state_ok = (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
                         strstr(r->str, "cluster_state:ok") != NULL;
}

/* Asks one answering node for the map: a master of the map first, since a
 * node the map no longer names may be the one that left. */
static void refresh(struct cluster *c)
{
    const char *info[] = {"CLUSTER", "INFO"};
    const char *argv[] = {"CLUSTER", "SLOTS"};
    struct node *pick = NULL;
    for (int i = 0; i < c->nnodes && !pick; i++)
        if (c->nodes[i]->up && memchr(c->owner, i, sizeof(c->owner)))
            pick = c->nodes[i];
    for (int i = 0; i < c->nnodes && !pick; i++)
        if (c->nodes[i]->up)
            pick = c->nodes[i];
    if (!pick)
        return; /* the nodes reconnect on their own; asked at the next tick */
    if (redis_command_argv(pick->conn, on_info, pick, 2, info, NULL) == CG_OK &&
        redis_command_argv(pick->conn, on_slots, pick, 2, argv, NULL) == CG_OK)
        c->refreshing = 1;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct cluster *c = arg;
    (void)fd;
    (void)what;
    if (!c->refreshing &&
        (!c->up || c->refresh_wanted || now_ms() - c->refreshed_ms > REFRESH_MS))
        refresh(c);
}

/* --- commands --- */

static struct cmd *cmd_new(struct cluster *c, redisCallbackFn *fn, void *privdata, int argc,
                           const char **argv, const size_t *argvlen)
{
    size_t bytes = 0;
    for (int i = 0; i < argc; i++)
        bytes += argvlen ? argvlen[i] : strlen(argv[i]);
    struct cmd *m = malloc(sizeof(*m) + (size_t)argc * (sizeof(char *) + sizeof(size_t)) + bytes);
    if (!m)
        return NULL;
    *m = (struct cmd){.c = c, .fn = fn, .privdata = privdata, .argc = argc};
    m->argv = (const char **)(m + 1);
    m->lens = (size_t *)(m->argv + argc);
    char *p = (char *)(m->lens + argc);
    for (int i = 0; i < argc; i++) {
        m->lens[i] = argvlen ? argvlen[i] : strlen(argv[i]);
        memcpy(p, argv[i], m->lens[i]);
        m->argv[i] = p;
        p += m->lens[i];
    }
    return m;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

static int send_to(struct cmd *m, struct node *n, int asking)
{
    static const char *const ask[] = {"ASKING"};
    if (asking && redis_command_argv(n->conn, NULL, NULL, 1, (const char **)ask, NULL))
        return CG_EREDIS;
    int rc = redis_command_argv(n->conn, on_reply, m, m->argc, m->argv, m->lens);
    if (rc == CG_OK) {
        n->written = 1;
        m->at = n;
    }
    return rc;
}

/* "MOVED <slot> <host>:<port>" or "ASK ...": the node to send to instead;
 * -1 if the reply is neither. */
static int redirect_target(struct cluster *c, const char *err, int *ask, unsigned *slot)
{
    char host[256];
    unsigned s;
    int port, off = 0;
    *ask = strncmp(err, "ASK ", 4) == 0;
    if (!*ask && strncmp(err, "MOVED ", 6) != 0)
        return -1;
    if (sscanf(err + (*ask ? 4 : 6), "%u %n", &s, &off) != 1 || s >= CLUSTER_SLOTS)
        return -1;
    const char *addr = err + (*ask ? 4 : 6) + off;
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof(host) || (port = atoi(colon + 1)) <= 0)
        return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *slot = s;
    return node_index(c, host, port, 1);
}

static void cmd_free(struct cmd *m)
{
    if (m->retry)
        event_free(m->retry);
    free(m);
}

static void unlink_retry(struct cmd *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        m->c->retrying = m->next;
    if (m->next)
        m->next->prev = m->prev;
    m->prev = m->next = NULL;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct cmd *m = arg;
    struct cluster *c = m->c;
    (void)fd;
    (void)what;
    unlink_retry(m);
    uint8_t owner = c->owner[m->slot];
    if (owner != NO_NODE && send_to(m, c->nodes[owner], 0) == CG_OK)
        return;
    if (m->fn)
        m->fn(NULL, NULL, m->privdata); /* as a lost connection: not run */
    cmd_free(m);
}

/* Sends m again in TRYAGAIN_MS; 0 if it will. */
static int retry_later(struct cmd *m)
{
    struct cluster *c = m->c;
    struct timeval tv = {0, TRYAGAIN_MS * 1000};
    if (m->tries++ >= TRYAGAIN_MAX ||
        (!m->retry && !(m->retry = event_new(c->base, -1, 0, on_retry, m))) ||
        event_add(m->retry, &tv))
        return -1;
    m->next = c->retrying;
    if (c->retrying)
        c->retrying->prev = m;
    c->retrying = m;
    return 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct cmd *m = privdata;
    struct cluster *c = m->c;
    const redisReply *r = reply;

    if (r && r->type == REDIS_REPLY_ERROR && !c->dying) {
        int ask;
        unsigned slot;
        int to = redirect_target(c, r->str, &ask, &slot);
        if (to >= 0) {
            if (m->at)
                atomic_fetch_add_explicit(&m->at->redirects, 1, memory_order_relaxed);
            if (!ask) { /* the slot lives there now; the rest of the map may have moved too */
                c->owner[slot] = (uint8_t)to;
                c->refresh_wanted = 1;
            }
            if (m->redirects++ < MAX_REDIRECTS && c->nodes[to]->up &&
                send_to(m, c->nodes[to], ask) == CG_OK)
                return;
        } else if (strncmp(r->str, "TRYAGAIN", 8) == 0) {
            if (retry_later(m) == 0)
                return;
        } else if (strncmp(r->str, "CLUSTERDOWN", 11) == 0) {
            /* Not serving until it says cluster_state:ok again; the command
             * waits a little for that, as for TRYAGAIN. */
            c->state_ok = 0;
            recompute(c);
            if (retry_later(m) == 0)
                return;
        } else if (strncmp(r->str, "NOSCRIPT", 8) == 0 && !m->reloaded && c->opts.on_connect) {
            /* This node lost its scripts (a restart, a new master): load
             * them on this connection, then run the command behind them. */
            m->reloaded = 1;
            c->opts.on_connect(ac, c->opts.connect_data);
            if (redisAsyncCommandArgv(ac, on_reply, m, m->argc, m->argv, m->lens) == REDIS_OK)
                return;
        }
    }
    if (m->fn)
        m->fn(ac, reply, m->privdata);
    cmd_free(m);
}

/* The command's key: the first key of an EVALSHA, else its first argument;
 * NULL for commands without one. */
static const char *key_of(int argc, const char **argv, const size_t *lens, size_t *len)
{
    static const char *const keyless[] = {"SCRIPT", "PING", "WAIT", "INFO", "CLUSTER", "ROLE"};
    int at = 1;
    if (strcasecmp(argv[0], "EVALSHA") == 0 || strcasecmp(argv[0], "EVAL") == 0)
        at = argc > 3 && atoi(argv[2]) > 0 ? 3 : argc;
    for (size_t i = 0; i < sizeof(keyless) / sizeof(keyless[0]); i++)
        if (strcasecmp(argv[0], keyless[i]) == 0)
            at = argc;
    if (at >= argc)
        return NULL;
    *len = lens ? lens[at] : strlen(argv[at]);
    return argv[at];
}

int cluster_command_argv(struct cluster *c, redisCallbackFn *fn, void *privdata, int argc,
                         const char **argv, const size_t *argvlen)
{
    LOOP_ASSERT_OWNER(c->base);
    size_t klen;
    /* dying: a command failed by cluster_free may be followed by another
     * from its callback, and the nodes are going one by one. */
    if (argc < 1 || c->dying)
        return CG_EREDIS;
    const char *key = key_of(argc, argv, argvlen, &klen);
    if (!key && strcasecmp(argv[0], "SCRIPT") != 0)
        return CG_EINVAL; /* no slot to send it to, and fn must run once */
    if (!key) { /* SCRIPT LOAD: every master's */
        int sent = 0;
        for (int i = 0; i < c->nnodes; i++) {
            if (!c->nodes[i]->up || !memchr(c->owner, i, sizeof(c->owner)))
                continue;
            struct cmd *m = cmd_new(c, fn, privdata, argc, argv, argvlen);
            if (m && send_to(m, c->nodes[i], 0) == CG_OK)
                sent++;
            else
                free(m);
        }
        return sent ? CG_OK : CG_EREDIS;
    }
    /* Only the slot's master has to answer: with one master lost, calls
     * whose keys live elsewhere go on (health says NOT_SERVING meanwhile). */
    unsigned slot = cluster_slot(key, klen);
    if (c->owner[slot] == NO_NODE || !c->nodes[c->owner[slot]]->up)
        return CG_EREDIS;
    struct cmd *m = cmd_new(c, fn, privdata, argc, argv, argvlen);
    if (!m)
        return CG_ENOMEM;
    m->slot = slot;
    if (send_to(m, c->nodes[c->owner[slot]], 0) != CG_OK) {
        free(m);
        return CG_EREDIS;
    }
    return CG_OK;
}

/* --- waiting for writes --- */

static void tell_waiters(struct redis_waiter *w, int ok)
{
    while (w) {
        struct redis_waiter *next = w->next;
        w->done(w, ok);
        w = next;
    }
}

static void on_part(struct redis_waiter *w, int ok)
{
    struct part *p = (struct part *)w;
    struct barrier *b = p->b;
    b->ok &= ok;
    if (--b->pending == 0) {
        tell_waiters(b->waiters, b->ok);
        free(b);
    }
}

static void on_barrier(evutil_socket_t fd, short what, void *arg)
{
    struct cluster *c = arg;
    struct redis_waiter *waiters = c->waiters;
    struct node *to[MAX_NODES];
    int n = 0, any = 0;
    (void)fd;
    (void)what;
    c->waiters = NULL;
    c->barrier_armed = 0;
    if (!waiters)
        return;
    for (int i = 0; i < c->nnodes; i++)
        any |= c->nodes[i]->written;
    /* Nothing written this turn: every master, so a cluster that lost one
     * says so. */
    for (int i = 0; i < c->nnodes; i++) {
        if (any ? c->nodes[i]->written : memchr(c->owner, i, sizeof(c->owner)) != NULL)
            to[n++] = c->nodes[i];
        c->nodes[i]->written = 0;
    }
    struct barrier *b = n ? malloc(sizeof(*b) + (size_t)n * sizeof(struct part)) : NULL;
    if (!b) {
        tell_waiters(waiters, 0);
        return;
    }
    b->waiters = waiters;
    b->ok = 1;
    b->pending = n;
    for (int i = 0; i < n; i++) {
        b->parts[i] = (struct part){.w.done = on_part, .b = b};
        redis_after_writes(to[i]->conn, &b->parts[i].w); /* told later, never in here */
    }
}

void cluster_after_writes(struct cluster *c, struct redis_waiter *w)
{
    LOOP_ASSERT_OWNER(c->base);
    w->next = c->waiters;
    c->waiters = w;
    if (c->dying)
        return; /* told, failed, by cluster_free (the barrier is gone) */
    if (!c->barrier_armed) {
        c->barrier_armed = 1;
        event_active(c->barrier, EV_TIMEOUT, 0);
    }
}

/* --- life --- */

int cluster_new(struct event_base *base, const struct redis_opts *opts, struct cluster **out)
{
    struct cluster *c = calloc(1, sizeof(*c));
    if (!c)
        return CG_ENOMEM;
    c->base = base;
    c->opts = *opts;
    c->server = *opts->server;
    c->opts.server = &c->server;
    memset(c->owner, NO_NODE, sizeof(c->owner));
    atomic_store(&c->no_master, 1);
    c->tick = event_new(base, -1, EV_PERSIST, on_tick, c);
    c->barrier = event_new(base, -1, 0, on_barrier, c);
    if (!c->tick || !c->barrier) {
        cluster_free(&c);
        return CG_ENOMEM;
    }
    *out = c;
    return CG_OK;
}

int cluster_start(struct cluster *c)
{
    LOOP_ASSERT_OWNER(c->base);
    int ms = c->opts.ping_interval_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (event_add(c->tick, &tv))
        return CG_ESYS;
    for (int i = 0; i < c->server.nseeds; i++)
        if (node_index(c, c->server.seeds[i].host, c->server.seeds[i].port, 1) < 0)
            return CG_ENOMEM;
    return CG_OK;
}

int cluster_is_up(const struct cluster *c)
{
    return c->up;
}

int cluster_nodes(const struct cluster *c, struct redis_node_stat *out, int max)
{
    int n = atomic_load_explicit(&c->nnodes_seen, memory_order_acquire);
    for (int i = 0; i < n && i < max; i++) {
        redis_nodes(c->nodes[i]->conn, &out[i], 1);
        out[i].redirects = atomic_load_explicit(&c->nodes[i]->redirects, memory_order_relaxed);
    }
    return n;
}

void cluster_counts(const struct cluster *c, struct redis_counts *out)
{
    out->master_changes = atomic_load(&c->map_changes);
    out->no_master = atomic_load(&c->no_master);
}

void cluster_free(struct cluster **cp)
{
    struct cluster *c = *cp;
    if (!c)
        return;
    c->dying = 1;
    c->opts.on_health = NULL;
    if (c->tick)
        event_free(c->tick);
    if (c->barrier)
        event_free(c->barrier);
    for (int i = 0; i < c->nnodes; i++) {
        redis_free(&c->nodes[i]->conn); /* pending commands and parts are told */
        free(c->nodes[i]);
    }
    while (c->retrying) {
        struct cmd *m = c->retrying;
        unlink_retry(m);
        if (m->fn)
            m->fn(NULL, NULL, m->privdata);
        cmd_free(m);
    }
    while (c->waiters) { /* a waiter told may wait again */
        struct redis_waiter *unsent = c->waiters;
        c->waiters = NULL;
        tell_waiters(unsent, 0);
    }
    free(c);
    *cp = NULL;
}
