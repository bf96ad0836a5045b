/* Resolve (getaddrinfo on a thread of its own), then redisAsyncConnect on
 * the address. Not evdns: it asks a resolv.conf's nameservers in turn, one
 * query each, where the C library asks the first and moves on only when it
 * does not answer; with podman's two (its own, then the host's), every
 * other lookup of a container's name came back "not known". getaddrinfo
 * also reads nsswitch, /etc/hosts and the search list as every other
 * program on the host does (libcurl's threaded resolver, too). */
#include "redis/dial.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop/loop.h"

struct redis_dialer {
    struct event_base *base;
    struct redis_dial *dials; /* still resolving; loop thread */
};

/* Shared by the loop and the lookup's thread until both let go (refs). The
 * thread writes the answer, then, under mu, wakes the loop unless the dial
 * was let go of meanwhile (cancelled, or its dialer freed, maybe its base
 * with it): then it only drops its reference. */
struct redis_dial {
    struct redis_dialer *d;
    struct redis_dial **owner; /* cleared when the dial ends */
    struct redis_dial *prev, *next;
    struct event *done;
    pthread_mutex_t mu;
    int orphaned; /* under mu */
    atomic_int refs;
    redis_dial_fn *fn;
    void *data;
    int port;
    int gai_err;
    char ip[INET6_ADDRSTRLEN];
    char host[256];
};

struct redis_dialer *redis_dialer_new(struct event_base *base)
{
    struct redis_dialer *d = calloc(1, sizeof(*d));
    if (d)
        d->base = base;
    return d;
}

static void dial_unref(struct redis_dial *dial)
{
    if (atomic_fetch_sub(&dial->refs, 1) == 1) {
        pthread_mutex_destroy(&dial->mu);
        free(dial);
    }
}

/* Loop thread: the dial is no longer the loop's, whatever the lookup does. */
static void dial_release(struct redis_dial *dial)
{
    struct redis_dialer *d = dial->d;
    if (dial->prev)
        dial->prev->next = dial->next;
    else
        d->dials = dial->next;
    if (dial->next)
        dial->next->prev = dial->prev;
    pthread_mutex_lock(&dial->mu);
    dial->orphaned = 1;
    pthread_mutex_unlock(&dial->mu);
    event_free(dial->done); /* after the thread's last event_active, if any */
    if (dial->owner)
        *dial->owner = NULL;
    dial_unref(dial);
}

void redis_dialer_free(struct redis_dialer **dp)
{
    struct redis_dialer *d = *dp;
    if (!d)
        return;
    while (d->dials)
        dial_release(d->dials); /* their threads finish on their own */
    free(d);
    *dp = NULL;
}

static void connect_ip(struct redis_dialer *d, const char *ip, int port, redis_dial_fn *fn,
                       void *data)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, port);
    if (!ac) {
        fn(NULL, "out of memory", data);
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        fn(NULL, why, data);
        return;
    }
    redisLibeventAttach(ac, d->base);
    fn(ac, NULL, data);
}

static void *lookup(void *arg)
{
    struct redis_dial *dial = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;

    dial->gai_err = getaddrinfo(dial->host, NULL, &hints, &res);
    if (!dial->gai_err && res->ai_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, dial->ip,
                  sizeof(dial->ip));
    else if (!dial->gai_err)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, dial->ip,
                  sizeof(dial->ip));
    if (res)
        freeaddrinfo(res);
    pthread_mutex_lock(&dial->mu);
    if (!dial->orphaned)
        event_active(dial->done, EV_READ, 0); /* the base's lock makes this safe here */
    pthread_mutex_unlock(&dial->mu);
    dial_unref(dial);
    return NULL;
}

static void on_resolved(evutil_socket_t fd, short what, void *arg)
{
    struct redis_dial *dial = arg;
    struct redis_dialer *d = dial->d;
    redis_dial_fn *fn = dial->fn;
    void *data = dial->data;
    char ip[INET6_ADDRSTRLEN];
    int err, port = dial->port;
    (void)fd;
    (void)what;

    pthread_mutex_lock(&dial->mu); /* the thread wrote the answer before taking it */
    err = dial->gai_err;
    memcpy(ip, dial->ip, sizeof(ip));
    pthread_mutex_unlock(&dial->mu);
    dial_release(dial);
    if (err)
        fn(NULL, gai_strerror(err), data);
    else
        connect_ip(d, ip, port, fn, data);
}

void redis_dial(struct redis_dialer *d, const char *host, int port, redis_dial_fn *fn,
                void *data, struct redis_dial **out)
{
    struct in6_addr tmp;
    pthread_attr_t attr;
    pthread_t t;

    LOOP_ASSERT_OWNER(d->base);
    *out = NULL;
    if (inet_pton(AF_INET, host, &tmp) == 1 || inet_pton(AF_INET6, host, &tmp) == 1) {
        connect_ip(d, host, port, fn, data);
        return;
    }
    struct redis_dial *dial = calloc(1, sizeof(*dial));
    if (!dial) {
        fn(NULL, "out of memory", data);
        return;
    }
    *dial = (struct redis_dial){.d = d, .owner = out, .port = port, .fn = fn, .data = data};
    snprintf(dial->host, sizeof(dial->host), "%s", host);
    atomic_init(&dial->refs, 2); /* the loop's and the thread's */
    if (pthread_mutex_init(&dial->mu, NULL)) {
        free(dial);
        fn(NULL, "cannot start a name lookup", data);
        return;
    }
    dial->done = event_new(d->base, -1, 0, on_resolved, dial);
    int started = dial->done && !pthread_attr_init(&attr);
    if (started) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        started = !pthread_create(&t, &attr, lookup, dial);
        pthread_attr_destroy(&attr);
    }
    if (!started) {
        if (dial->done)
            event_free(dial->done);
        pthread_mutex_destroy(&dial->mu);
        free(dial);
        fn(NULL, "cannot start a name lookup", data);
        return;
    }
    dial->next = d->dials;
    if (d->dials)
        d->dials->prev = dial;
    d->dials = dial;
    *out = dial;
}

void redis_dial_cancel(struct redis_dial **dialp)
{
    struct redis_dial *dial = *dialp;
    if (!dial)
        return;
    *dialp = NULL;
    dial->owner = NULL;
    dial_release(dial);
}
