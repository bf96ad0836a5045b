#include "webhook/connections.h"

#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <malloc.h>
#include <stdlib.h>
#include <time.h>

#include "core/error.h"
#include "core/log.h"
#include "loop/loop.h"

/* How long an answer the kernel will not take may wait for room. */
#define WRITE_WAIT_S 10
/* After this many connections at once, the port going quiet gives their
 * memory back to the system. */
#define TRIM_AFTER 64

/* Why the connection is poked; while it is, a reference on the filter is
 * held, so libevent cannot destroy the filter under the pending event. */
enum poke {
    POKE_NONE = 0,
    POKE_CUT = 1,      /* close it: the port was full, the request too slow, or the peer went */
    POKE_WRITE = 2,    /* evhttp added output: write it */
    POKE_WRITABLE = 4, /* the kernel had no room: waiting for some */
};

struct conn {
    struct conns *owner;
    struct bufferevent *filter; /* evhttp's; NULL once libevent destroyed it */
    struct bufferevent *sock;   /* under the filter, which owns it; reads only */
    struct event *poke;         /* runs on_poke from the loop */
    struct event *writable;     /* the socket has room again; made when first needed */
    int poking;                 /* enum poke bits pending */
    int writing;                /* in on_poke: output may be written now */
    long long request_ms;       /* first byte of the request being read; 0 between */
    struct conn *prev, *next;
};

struct conns {
    struct event_base *base;
    int max_open, request_s;
    int open;
    int peak; /* most open at once since memory was last given back */
    int dying; /* conns_free ran: the last connection frees it */
    unsigned long cut_full, cut_slow;
    struct log_limit cut_log;
    struct conn *list;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void log_cut(struct conns *cs, const char *why)
{
    unsigned long suppressed;
    /* Anyone on the internet can make these: one line a second, then a count. */
    if (log_limit_allow(&cs->cut_log, 1, &suppressed))
        log_event(LOG_LEVEL_WARN, "http_connection_cut",
                  json_pack("{s:s, s:i, s:I}", "why", why, "open", cs->open, "more_since_last",
                            (json_int_t)suppressed));
}

static void poke(struct conn *c, enum poke why)
{
    int was = c->poking & (POKE_CUT | POKE_WRITE);
    c->poking |= why;
    if (!was) {
        bufferevent_incref(c->filter);
        event_active(c->poke, EV_TIMEOUT, 1);
    }
}

static void on_poke(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct bufferevent *filter = c->filter;
    int poking = c->poking & (POKE_CUT | POKE_WRITE);
    (void)fd;
    (void)what;
    c->poking &= ~(POKE_CUT | POKE_WRITE);
    if (poking & POKE_CUT) {
        /* Said as an error on the connection, evhttp closes it. */
        bufferevent_trigger_event(filter, BEV_EVENT_READING | BEV_EVENT_ERROR, 0);
    } else {
        c->writing = 1;
        bufferevent_flush(filter, EV_WRITE, BEV_NORMAL);
        c->writing = 0;
    }
    bufferevent_decref(filter); /* may destroy it, and c with it, later */
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct bufferevent *filter = c->filter;
    (void)fd;
    c->poking &= ~POKE_WRITABLE;
    if (what & EV_WRITE) {
        c->writing = 1;
        bufferevent_flush(filter, EV_WRITE, BEV_NORMAL);
        c->writing = 0;
    } /* else the peer read nothing for WRITE_WAIT_S: evhttp's own timeout ends it */
    bufferevent_decref(filter);
}

/* Input passes through; a request over its time is an error instead, on
 * which evhttp closes the connection. */
static enum bufferevent_filter_result conn_input(struct evbuffer *src, struct evbuffer *dst,
                                                 ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                 void *arg)
{
    struct conn *c = arg;
    struct conns *cs = c->owner;
    long long now = now_ms();
    (void)mode;
    if (!c->request_ms)
        c->request_ms = now;
    else if (cs->request_s > 0 && now - c->request_ms > cs->request_s * 1000LL) {
        cs->cut_slow++;
        log_cut(cs, "request too slow");
        evbuffer_drain(src, evbuffer_get_length(src));
        poke(c, POKE_CUT);
        return BEV_ERROR;
    }
    size_t n = evbuffer_get_length(src);
    if (limit >= 0 && (size_t)limit < n)
        n = (size_t)limit;
    evbuffer_remove_buffer(src, dst, n);
    return BEV_OK;
}

/* Output goes straight to the kernel, from on_poke alone, never through
 * the socket's bufferevent. libevent's filter tells evhttp an answer is
 * written once it has left the filter, and evhttp then may shut the socket
 * down: an answer still queued under the filter would be lost (every
 * answer with Connection: close was). And the filter would otherwise move
 * output on in the middle of evhttp's writing it (its 100 Continue runs
 * the write callback of the request before). What the kernel will not
 * take waits in the filter for room. */
static enum bufferevent_filter_result conn_output(struct evbuffer *src, struct evbuffer *dst,
                                                  ev_ssize_t limit,
                                                  enum bufferevent_flush_mode mode, void *arg)
{
    struct conn *c = arg;
    evutil_socket_t fd = bufferevent_getfd(c->sock);
    (void)dst;
    (void)limit;
    (void)mode;
    if (!c->writing || fd < 0)
        return BEV_NEED_MORE;
    c->request_ms = 0; /* an answer is going out: the next request's clock starts */
    while (evbuffer_get_length(src)) {
        int n = evbuffer_write(src, fd);
        if (n > 0)
            continue;
        int err = EVUTIL_SOCKET_ERROR();
        if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) {
            if (!c->writable)
                c->writable = event_new(c->owner->base, fd, EV_WRITE, on_writable, c);
            struct timeval tv = {WRITE_WAIT_S, 0};
            if (!(c->poking & POKE_WRITABLE) && c->writable && !event_add(c->writable, &tv)) {
                bufferevent_incref(c->filter);
                c->poking |= POKE_WRITABLE;
                return BEV_NEED_MORE;
            }
        }
        /* The peer is gone (or no event to wait with): drop the answer. */
        evbuffer_drain(src, evbuffer_get_length(src));
        poke(c, POKE_CUT);
        return BEV_ERROR;
    }
    return BEV_OK;
}

/* Every answer evhttp adds is written from the loop, once evhttp's call
 * has returned. */
static void on_output_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;
    if (info->n_added && c->filter && evbuffer_get_length(buf))
        poke(c, POKE_WRITE);
}

/* libevent destroys the filter (and the socket under it) when evhttp is
 * done with the connection and no poke holds it, maybe after evhttp itself
 * is gone. */
static void conn_destroyed(void *arg)
{
    struct conn *c = arg;
    struct conns *cs = c->owner;
    assert(!c->poking);
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    event_free(c->poke);
    if (c->writable)
        event_free(c->writable);
    free(c);
    if (--cs->open == 0 && cs->dying) {
        free(cs);
        return;
    }
    if (cs->open == 0 && cs->peak >= TRIM_AFTER) {
        /* glibc keeps what a crowd of connections freed for the next one
         * (900 holding 15 KB headers left 28 MB behind, measured); a crowd
         * was most likely abuse. */
        malloc_trim(0);
        cs->peak = 0;
    }
}

struct bufferevent *conns_bufferevent(struct event_base *base, void *arg)
{
    struct conns *cs = arg;
    struct conn *c = calloc(1, sizeof(*c));

    LOOP_ASSERT_OWNER(base);
    if (!c)
        return NULL;
    c->owner = cs;
    c->sock = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    c->poke = event_new(base, -1, 0, on_poke, c);
    if (c->sock && c->poke)
        c->filter = bufferevent_filter_new(c->sock, conn_input, conn_output,
                                           BEV_OPT_CLOSE_ON_FREE, conn_destroyed, c);
    if (!c->filter) {
        if (c->sock)
            bufferevent_free(c->sock);
        if (c->poke)
            event_free(c->poke);
        free(c);
        return NULL;
    }
    /* From here the filter's end is the connection's (conn_destroyed). */
    c->next = cs->list;
    if (cs->list)
        cs->list->prev = c;
    cs->list = c;
    if (++cs->open > cs->peak)
        cs->peak = cs->open;
    if (!evbuffer_add_cb(bufferevent_get_output(c->filter), on_output_changed, c)) {
        bufferevent_free(c->filter);
        return NULL;
    }
    if (cs->max_open > 0 && cs->open > cs->max_open) {
        cs->cut_full++;
        log_cut(cs, "too many connections");
        poke(c, POKE_CUT); /* once evhttp has set the connection up */
    }
    return c->filter;
}

int conns_new(struct event_base *base, int max_open, int request_s, struct conns **out)
{
    struct conns *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return CG_ENOMEM;
    cs->base = base;
    cs->max_open = max_open;
    cs->request_s = request_s;
    *out = cs;
    return CG_OK;
}

void conns_free(struct conns **csp)
{
    struct conns *cs = *csp;
    if (!cs)
        return;
    LOOP_ASSERT_OWNER(cs->base);
    *csp = NULL;
    cs->dying = 1;
    /* The loop will not run the pokes now: give their references back (the
     * filters are destroyed later, by event_base_free at the latest). */
    for (struct conn *c = cs->list; c; c = c->next) {
        struct bufferevent *filter = c->filter;
        if (c->poking & (POKE_CUT | POKE_WRITE)) {
            event_del(c->poke);
            bufferevent_decref(filter);
        }
        if (c->poking & POKE_WRITABLE) {
            event_del(c->writable);
            bufferevent_decref(filter);
        }
        c->poking = POKE_NONE;
    }
    if (cs->open == 0)
        free(cs);
}

void conns_stats(const struct conns *cs, struct conns_stats *out)
{
    out->open = cs->open;
    out->cut_full = cs->cut_full;
    out->cut_slow = cs->cut_slow;
}
