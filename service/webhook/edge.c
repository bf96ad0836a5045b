#include "webhook/edge.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"

#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000

int edge_check_framing(const struct evkeyvalq *headers, const char **why)
{
    int n = 0, lengths = 0, encodings = 0, types = 0;
    const struct evkeyval *h;

    for (h = headers->tqh_first; h; h = h->next.tqe_next) {
        n++;
        if (strcasecmp(h->key, "Content-Length") == 0)
            lengths++;
        else if (strcasecmp(h->key, "Transfer-Encoding") == 0)
            encodings++;
        else if (strcasecmp(h->key, "Content-Type") == 0)
            types++;
    }
    if (n > EDGE_MAX_HEADERS) {
        *why = "too many header fields";
        return 431;
    }
    /* Two framings disagree about where the body ends: the way requests
     * are smuggled past a proxy. Never guess which one is meant. */
    if (lengths > 1) {
        *why = "Content-Length given more than once";
        return 400;
    }
    if (lengths && encodings) {
        *why = "both Content-Length and Transfer-Encoding";
        return 400;
    }
    if (types > 1) {
        *why = "Content-Type given more than once";
        return 400;
    }
    *why = NULL;
    return 0;
}

enum edge_media edge_media_type(const char *ct)
{
    static const struct {
        const char *name;
        enum edge_media media;
    } known[] = {{"application/x-www-form-urlencoded", EDGE_MEDIA_FORM},
                 {"application/json", EDGE_MEDIA_JSON}};

    if (!ct)
        return EDGE_MEDIA_OTHER;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i].name) == n && strncasecmp(ct, known[i].name, n) == 0)
            return known[i].media;
    return EDGE_MEDIA_OTHER;
}

struct edge_guard {
    struct evconnlistener *lev;
    struct event *resume;
    int reserve;      /* a descriptor kept for shedding a connection at EMFILE */
    int backoff_ms;
    long long last_error_ms;
    struct log_limit limit;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libevent hands a listener's error callback only the listener and the
 * argument of its accept callback, which is evhttp's: the guard of a
 * listener is found here. The one mutable state at file scope, for that
 * reason alone; a few listeners at most (one per webhook server). */
#define MAX_GUARDS 8
static struct {
    pthread_mutex_t lock;
    struct edge_guard *g[MAX_GUARDS];
} guards = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct edge_guard *guard_of(struct evconnlistener *lev)
{
    struct edge_guard *found = NULL;
    pthread_mutex_lock(&guards.lock);
    for (int i = 0; i < MAX_GUARDS && !found; i++)
        if (guards.g[i] && guards.g[i]->lev == lev)
            found = guards.g[i];
    pthread_mutex_unlock(&guards.lock);
    return found;
}

static int guard_register(struct edge_guard *g, int add)
{
    int done = 0;
    pthread_mutex_lock(&guards.lock);
    for (int i = 0; i < MAX_GUARDS && !done; i++) {
        if (add && !guards.g[i])
            guards.g[i] = g;
        else if (!add && guards.g[i] == g)
            guards.g[i] = NULL;
        else
            continue;
        done = 1;
    }
    pthread_mutex_unlock(&guards.lock);
    return done ? CG_OK : CG_ENOMEM;
}

static int open_reserve(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct edge_guard *g = arg;
    (void)fd;
    (void)what;
    evconnlistener_enable(g->lev);
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct edge_guard *g = guard_of(lev);
    int err = EVUTIL_SOCKET_ERROR();
    unsigned long suppressed;

    (void)arg; /* evhttp's */
    if (!g)
        return;
    if (err == EMFILE || err == ENFILE) {
        /* The connection waiting in the backlog would make the listener
         * readable again at once: accept it on the reserve descriptor and
         * close it, so the client hears at once instead of hanging. */
        if (g->reserve >= 0) {
            close(g->reserve);
            int fd = accept(evconnlistener_get_fd(lev), NULL, NULL);
            if (fd >= 0)
                close(fd);
            g->reserve = open_reserve();
        }
    }
    long long now = now_ms();
    if (now - g->last_error_ms > 5000)
        g->backoff_ms = 0; /* a new episode starts short */
    g->last_error_ms = now;
    g->backoff_ms = g->backoff_ms ? g->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (g->backoff_ms > BACKOFF_MAX_MS)
        g->backoff_ms = BACKOFF_MAX_MS;
    if (log_limit_allow(&g->limit, 1, &suppressed))
        log_event(LOG_LEVEL_WARN, "http_accept_failed",
                  json_pack("{s:s, s:i, s:I}", "error", strerror(err), "pause_ms", g->backoff_ms,
                            "more_since_last", (json_int_t)suppressed));
    evconnlistener_disable(lev);
    struct timeval tv = {g->backoff_ms / 1000, (g->backoff_ms % 1000) * 1000};
    evtimer_add(g->resume, &tv);
}

int edge_guard_new(struct event_base *base, struct evconnlistener *lev, struct edge_guard **out)
{
    struct edge_guard *g = calloc(1, sizeof(*g));
    if (!g)
        return CG_ENOMEM;
    g->lev = lev;
    g->reserve = open_reserve();
    g->resume = evtimer_new(base, on_resume, g);
    if (!g->resume || guard_register(g, 1)) {
        edge_guard_free(&g);
        return CG_ENOMEM;
    }
    evconnlistener_set_error_cb(lev, on_accept_error);
    *out = g;
    return CG_OK;
}

void edge_guard_free(struct edge_guard **gp)
{
    struct edge_guard *g = *gp;
    if (!g)
        return;
    guard_register(g, 0);
    if (g->resume)
        event_free(g->resume);
    if (g->reserve >= 0)
        close(g->reserve);
    free(g);
    *gp = NULL;
}
