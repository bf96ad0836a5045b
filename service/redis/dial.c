/* Resolve (evdns), then redisAsyncConnect on the address. */
#include "redis/dial.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <stdlib.h>
#include <string.h>

#include "loop/loop.h"

struct redis_dialer {
    struct event_base *base;
    struct evdns_base *dns;
};

struct redis_dial {
    struct redis_dialer *d;
    struct evdns_getaddrinfo_request *req;
    struct redis_dial **owner; /* cleared when the dial ends */
    int port;
    redis_dial_fn *fn;
    void *data;
};

struct redis_dialer *redis_dialer_new(struct event_base *base)
{
    struct redis_dialer *d = calloc(1, sizeof(*d));
    if (d)
        d->base = base;
    return d;
}

void redis_dialer_free(struct redis_dialer **dp)
{
    struct redis_dialer *d = *dp;
    if (!d)
        return;
    if (d->dns)
        evdns_base_free(d->dns, 0);
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

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct redis_dial *dial = arg;
    char ip[INET6_ADDRSTRLEN];

    if (result == EVUTIL_EAI_CANCEL) {
        free(dial); /* redis_dial_cancel already let go of it */
        return;
    }
    *dial->owner = NULL;
    if (result != 0 || !res) {
        dial->fn(NULL, evutil_gai_strerror(result), dial->data);
    } else {
        if (res->ai_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof(ip));
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, ip,
                      sizeof(ip));
        connect_ip(dial->d, ip, dial->port, dial->fn, dial->data);
    }
    if (res)
        evutil_freeaddrinfo(res);
    free(dial);
}

void redis_dial(struct redis_dialer *d, const char *host, int port, redis_dial_fn *fn,
                void *data, struct redis_dial **out)
{
    struct in6_addr tmp;
    struct evutil_addrinfo hints;

    LOOP_ASSERT_OWNER(d->base);
    *out = NULL;
    if (inet_pton(AF_INET, host, &tmp) == 1 || inet_pton(AF_INET6, host, &tmp) == 1) {
        connect_ip(d, host, port, fn, data);
        return;
    }
    if (!d->dns) {
        d->dns = evdns_base_new(d->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (!d->dns) {
            fn(NULL, "cannot start the DNS resolver", data);
            return;
        }
    }
    struct redis_dial *dial = calloc(1, sizeof(*dial));
    if (!dial) {
        fn(NULL, "out of memory", data);
        return;
    }
    *dial = (struct redis_dial){.d = d, .owner = out, .port = port, .fn = fn, .data = data};
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    *out = dial;
    /* May answer at once (a name in /etc/hosts, say): then dial is already
     * freed and *out cleared when this returns. */
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(d->dns, host, NULL, &hints, on_resolved, dial);
    if (*out == dial)
        dial->req = req;
}

void redis_dial_cancel(struct redis_dial **dialp)
{
    struct redis_dial *dial = *dialp;
    if (!dial)
        return;
    *dialp = NULL;
    dial->owner = NULL;
    evdns_getaddrinfo_cancel(dial->req); /* on_resolved frees it, with CANCEL */
}
