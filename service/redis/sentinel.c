/* One question at a time: SENTINEL get-master-addr-by-name on a fresh
 * connection to one sentinel, with a deadline; no answer moves on to the
 * next. The sentinel that answered also gets a SUBSCRIBE +switch-master
 * connection, kept open, so a failover is heard of at once rather than at
 * the next failed command. */
#include "redis/sentinel.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "loop/loop.h"
#include "redis/dial.h"

enum ask_state { ASK_IDLE, ASK_DIALING, ASK_WAITING };

struct sentinel {
    struct event_base *base;
    struct redis_dialer *dialer;
    struct sentinel_opts opts;
    enum ask_state state;
    int good;  /* the sentinel that answered last */
    int at;    /* the one being asked */
    int tried; /* in this ask */
    char why[512];
    char conn_err[128]; /* why the ask connection failed, if it did */
    struct redis_dial *dial;
    redisAsyncContext *ask_ac;
    struct event *deadline;
    /* The subscription, on sentinel sub_at. */
    struct redis_dial *sub_dial;
    redisAsyncContext *sub_ac;
    int sub_at;
};

static const struct config_redis_node *node(const struct sentinel *s, int i)
{
    return &s->opts.cfg->sentinels[i];
}

static void set_state(struct sentinel *s, enum ask_state to)
{
    s->state = to;
}

static void try_next(struct sentinel *s);

/* Ends the ask connection from outside its callbacks. */
static void close_ask(struct sentinel *s)
{
    redisAsyncContext *ac = s->ask_ac;
    s->ask_ac = NULL; /* its callbacks now see a stranger */
    event_del(s->deadline);
    if (ac)
        redisAsyncFree(ac);
}

static void failed(struct sentinel *s, const char *why)
{
    const struct config_redis_node *n = node(s, s->at);
    snprintf(s->why, sizeof(s->why), "sentinel %s:%d: %s", n->host, n->port, why);
    log_event(LOG_LEVEL_WARN, "sentinel_failed",
              json_pack("{s:s, s:i, s:s}", "host", n->host, "port", n->port, "reason", why));
    try_next(s);
}

static void on_ask_connect(const redisAsyncContext *ac, int status)
{
    struct sentinel *s = ac->data;
    if (ac == s->ask_ac && status != REDIS_OK)
        snprintf(s->conn_err, sizeof(s->conn_err), "%s", ac->errstr);
}

static void on_ask_disconnect(const redisAsyncContext *ac, int status)
{
    struct sentinel *s = ac->data;
    (void)status;
    if (ac == s->ask_ac)
        s->ask_ac = NULL; /* the answer callback already ran with NULL */
}

static void on_sub_disconnect(const redisAsyncContext *ac, int status)
{
    struct sentinel *s = ac->data;
    (void)status;
    if (ac == s->sub_ac)
        s->sub_ac = NULL; /* subscribed again after the next answer */
}

static void on_switch_message(redisAsyncContext *ac, void *reply, void *data)
{
    struct sentinel *s = data;
    const redisReply *r = reply;
    char name[128], oldip[64], newip[64];
    int oldport, newport;

    if (ac != s->sub_ac || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[2]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message"))
        return; /* the subscription's own confirmation, or the end */
    if (sscanf(r->element[2]->str, "%127s %63s %d %63s %d", name, oldip, &oldport, newip,
               &newport) != 5 ||
        strcmp(name, s->opts.cfg->master_name))
        return; /* another master's news */
    log_event(LOG_LEVEL_WARN, "redis_master_switched",
              json_pack("{s:s, s:s, s:i, s:s, s:i}", "master", name, "from_host", oldip,
                        "from_port", oldport, "to_host", newip, "to_port", newport));
    s->opts.on_switch(s->opts.data);
}

static void on_sub_dialed(redisAsyncContext *ac, const char *why, void *data)
{
    struct sentinel *s = data;
    if (!ac) {
        log_event(LOG_LEVEL_WARN, "sentinel_subscribe_failed",
                  json_pack("{s:s, s:s}", "host", node(s, s->sub_at)->host, "reason", why));
        return;
    }
    ac->data = s;
    s->sub_ac = ac;
    redisAsyncSetDisconnectCallback(ac, on_sub_disconnect);
    redisAsyncCommand(ac, on_switch_message, s, "SUBSCRIBE +switch-master");
}

/* Listens on sentinel i, leaving any other one it listened on. */
static void subscribe(struct sentinel *s, int i)
{
    if ((s->sub_ac || s->sub_dial) && s->sub_at == i)
        return;
    redis_dial_cancel(&s->sub_dial);
    if (s->sub_ac) {
        redisAsyncContext *ac = s->sub_ac;
        s->sub_ac = NULL;
        redisAsyncFree(ac);
    }
    s->sub_at = i;
    redis_dial(s->dialer, node(s, i)->host, node(s, i)->port, on_sub_dialed, s, &s->sub_dial);
}

static void on_answer(redisAsyncContext *ac, void *reply, void *data)
{
    struct sentinel *s = data;
    const redisReply *r = reply;
    char host[256];
    int port;

    if (ac != s->ask_ac)
        return; /* an ask we gave up on */
    event_del(s->deadline);
    if (!r) {
        s->ask_ac = NULL; /* hiredis ends it after this callback */
        failed(s, s->conn_err[0] ? s->conn_err : "connection lost");
        return;
    }
    redisAsyncDisconnect(ac); /* ends once this callback returns */
    s->ask_ac = NULL;
    if (r->type == REDIS_REPLY_ERROR) {
        failed(s, r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
        snprintf(host, sizeof(host), "%s", r->element[0]->str) >= (int)sizeof(host) ||
        (port = atoi(r->element[1]->str)) <= 0 || port > 65535) {
        failed(s, "knows no master of that name");
        return;
    }
    s->good = s->at;
    set_state(s, ASK_IDLE);
    subscribe(s, s->at);
    s->opts.on_master(host, port, NULL, s->opts.data);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct sentinel *s = arg;
    (void)fd;
    (void)what;
    close_ask(s);
    failed(s, "no answer in time");
}

static void on_ask_dialed(redisAsyncContext *ac, const char *why, void *data)
{
    struct sentinel *s = data;
    struct timeval tv = {s->opts.timeout_ms / 1000, (s->opts.timeout_ms % 1000) * 1000};

    if (!ac) {
        failed(s, why);
        return;
    }
    ac->data = s;
    s->ask_ac = ac;
    s->conn_err[0] = '\0';
    set_state(s, ASK_WAITING);
    redisAsyncSetConnectCallback(ac, on_ask_connect);
    redisAsyncSetDisconnectCallback(ac, on_ask_disconnect);
    /* Queued now, sent once connected. */
    redisAsyncCommand(ac, on_answer, s, "SENTINEL get-master-addr-by-name %s",
                      s->opts.cfg->master_name);
    event_add(s->deadline, &tv);
}

static void try_next(struct sentinel *s)
{
    int n = s->opts.cfg->nsentinels;
    if (s->tried == n) {
        set_state(s, ASK_IDLE);
        s->opts.on_master(NULL, 0, s->why, s->opts.data);
        return;
    }
    s->at = (s->good + s->tried++) % n;
    set_state(s, ASK_DIALING);
    redis_dial(s->dialer, node(s, s->at)->host, node(s, s->at)->port, on_ask_dialed, s,
               &s->dial);
}

void sentinel_ask(struct sentinel *s)
{
    LOOP_ASSERT_OWNER(s->base);
    if (s->state != ASK_IDLE)
        return;
    s->tried = 0;
    try_next(s);
}

int sentinel_new(struct event_base *base, struct redis_dialer *dialer,
                 const struct sentinel_opts *opts, struct sentinel **out)
{
    struct sentinel *s;
    if (opts->cfg->nsentinels < 1)
        return CG_EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return CG_ENOMEM;
    s->base = base;
    s->dialer = dialer;
    s->opts = *opts;
    s->deadline = event_new(base, -1, 0, on_deadline, s);
    if (!s->deadline) {
        free(s);
        return CG_ENOMEM;
    }
    *out = s;
    return CG_OK;
}

void sentinel_free(struct sentinel **sp)
{
    struct sentinel *s = *sp;
    if (!s)
        return;
    redis_dial_cancel(&s->dial);
    redis_dial_cancel(&s->sub_dial);
    close_ask(s);
    if (s->sub_ac) {
        redisAsyncContext *ac = s->sub_ac;
        s->sub_ac = NULL;
        redisAsyncFree(ac);
    }
    event_free(s->deadline);
    free(s);
    *sp = NULL;
}
