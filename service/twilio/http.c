/* libcurl's multi interface on the loop thread's libevent base, the pattern of
 * curl's docs/examples hiper.c and multi-event.c: curl says which sockets to
 * watch and when to wake it; finished transfers come back through
 * curl_multi_info_read, with CURLOPT_PRIVATE pointing at the request. User
 * callbacks run only after curl_multi_socket_action has returned, never from
 * inside a curl callback, so they may start, cancel and free freely. */
#include "twilio/http.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "loop/loop.h"

#define CTYPE_PREFIX "Content-Type: "
#define RETRY_AFTER "retry-after:"
/* An idle request keeps buffers up to this size for the next one. */
#define KEEP_BUFFER_MAX (64 * 1024)
/* max_response_bytes is clamped here, so size arithmetic cannot overflow. */
#define RESPONSE_LIMIT ((size_t)1 << 30)

enum req_state { REQ_IDLE, REQ_RUNNING, REQ_FINISHING };

static const char *const req_state_names[] = {"idle", "running", "finishing"};

/* curl walks every connection of a multi handle to a host when a request
 * starts (for one to reuse) and when one ends (for connect-only ones to
 * close), in use or not; with thousands in flight those walks were a sixth
 * of the loop thread. So requests are spread over several multi handles,
 * each with its own connections, and the walks are that much shorter. */
#define SHARDS_MAX 16
/* Connections per shard at least, when there is a limit. */
#define SHARD_MIN_CONNECTIONS 16

struct shard {
    struct http_ctx *ctx;
    CURLM *multi;
    struct event *timer;
    unsigned in_flight;
    unsigned connections; /* sockets curl opened and has not closed */
    long max_connections; /* 0: no limit */
};

/* A socket curl asked us to watch. Kept on a spare list when curl is done
 * with it, since a reused connection is removed and re-added per request. */
struct sock {
    struct shard *shard;
    struct event *ev;
    struct sock *prev, *next; /* ctx->socks while watched; ctx->spare_socks (next only) when not */
};

struct http_req {
    struct http_ctx *ctx;
    struct shard *shard; /* while running */
    struct http_req *prev, *next; /* ctx->active while running; ctx->idle (next only) when idle */
    enum req_state state;
    unsigned long id;
    CURL *easy;
    http_done_fn *done;
    void *data;

    char *body; /* our copy of the POST body; curl reads it in place */
    size_t body_cap;
    int sends;  /* times curl was about to send the request (on_prereq) */
    int post;   /* a POST: on_prereq counts its sends */
    char *resp; /* the response body, NUL-terminated at the end */
    size_t resp_len, resp_cap, resp_max;
    int too_big;
    long retry_after_ms;
    struct curl_slist *headers; /* "Expect:", then the Content-Type line if any; kept while
                                   the next request's content type is the same */
    char errbuf[CURL_ERROR_SIZE];
};

struct http_ctx {
    struct event_base *base;
    struct shard shards[SHARDS_MAX];
    unsigned nshards;
    char *user_agent;
    struct http_cas *cas; /* shared with the other loops' contexts, or own_cas */
    struct http_cas *own_cas;
    /* TLS sessions (and DNS answers) shared by every easy handle of every
     * shard, so a new connection resumes a session instead of a full
     * handshake. One thread uses it: no lock callbacks. */
    CURLSH *share;
    unsigned idle_max;

    struct http_req *active; /* requests in flight */
    struct http_req *idle;   /* finished requests with their easy handles, for reuse */
    struct sock *socks, *spare_socks;
    struct http_stats stats; /* totals over the shards */
    int depth;   /* our event callbacks (and http_free) on the stack */
    int closing; /* http_free ran; the memory goes when depth drops to 0 */
};

/* Every request state change goes through here, so a debug log shows them. */
static void req_set_state(struct http_req *req, enum req_state state)
{
    if (req->state != state && log_enabled(LOG_LEVEL_DEBUG))
        log_event(LOG_LEVEL_DEBUG, "http_req_state",
                  json_pack("{s:I, s:s, s:s}", "req", (json_int_t)req->id, "from",
                            req_state_names[req->state], "to", req_state_names[state]));
    req->state = state;
}

/* ---- sockets and the timer: curl's callbacks into libevent ---- */

static void destroy(struct http_ctx *c);
static void finish(struct http_req *req, CURLcode code, const char *why);

static void read_done(struct shard *sh)
{
    CURLMsg *msg;
    int left;

    while (!sh->ctx->closing && (msg = curl_multi_info_read(sh->multi, &left))) {
        char *priv = NULL;
        CURLcode code;

        if (msg->msg != CURLMSG_DONE)
            continue;
        code = msg->data.result; /* msg is invalid once the handle is removed */
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        finish((struct http_req *)priv, code, NULL);
    }
}

/* The one place curl runs; done callbacks follow once it has returned. */
static void drive(struct shard *sh, curl_socket_t fd, int flags)
{
    struct http_ctx *c = sh->ctx;
    int running;
    CURLMcode mc;

    c->depth++;
    mc = curl_multi_socket_action(sh->multi, fd, flags, &running);
    if (mc != CURLM_OK)
        log_warn("http_socket_action_failed", "%s", curl_multi_strerror(mc));
    read_done(sh);
    if (--c->depth == 0 && c->closing)
        destroy(c);
}

static void on_sock_event(evutil_socket_t fd, short events, void *arg)
{
    struct sock *s = arg;
    int flags = ((events & EV_READ) ? CURL_CSELECT_IN : 0) |
                ((events & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    drive(s->shard, fd, flags); /* s may be gone after this */
}

static void on_timer(evutil_socket_t fd, short events, void *arg)
{
    drive(arg, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_TIMERFUNCTION: only arms the event. Calling curl from here is not
 * allowed, and it keeps curl_multi_add_handle from running anything. */
static int on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    struct shard *sh = userp;
    struct timeval tv;

    if (timeout_ms < 0) {
        evtimer_del(sh->timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(sh->timer, &tv) ? -1 : 0;
}

static struct sock *sock_get(struct shard *sh)
{
    struct http_ctx *c = sh->ctx;
    struct sock *s = c->spare_socks;

    if (s) {
        c->spare_socks = s->next;
    } else {
        s = calloc(1, sizeof(*s));
        if (!s)
            return NULL;
        s->ev = event_new(c->base, -1, 0, on_sock_event, s);
        if (!s->ev) {
            free(s);
            return NULL;
        }
    }
    s->shard = sh;
    s->prev = NULL;
    s->next = c->socks;
    if (c->socks)
        c->socks->prev = s;
    c->socks = s;
    return s;
}

static void sock_release(struct http_ctx *c, struct sock *s)
{
    event_del(s->ev);
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = NULL;
    s->next = c->spare_socks;
    c->spare_socks = s;
}

/* CURLMOPT_SOCKETFUNCTION */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct shard *sh = userp;
    struct http_ctx *c = sh->ctx;
    struct sock *s = socketp;
    short events;

    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_release(c, s);
        return 0;
    }
    if (!s) {
        s = sock_get(sh);
        if (!s)
            return -1;
        if (curl_multi_assign(sh->multi, fd, s) != CURLM_OK) {
            sock_release(c, s);
            return -1;
        }
    } else {
        event_del(s->ev); /* event_assign wants it not pending */
    }
    events = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
             ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (event_assign(s->ev, c->base, fd, events, on_sock_event, s) || event_add(s->ev, NULL))
        return -1;
    return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION and CLOSESOCKETFUNCTION: they only count
 * connections, for the reuse rule in req_setup. */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose,
                                    struct curl_sockaddr *addr)
{
    struct shard *sh = clientp;
    curl_socket_t fd = socket(addr->family, addr->socktype, addr->protocol);
    if (fd != CURL_SOCKET_BAD) {
        sh->connections++;
        sh->ctx->stats.connections++;
    }
    return fd;
}

static int on_close_socket(void *clientp, curl_socket_t fd)
{
    struct shard *sh = clientp;
    sh->connections--;
    sh->ctx->stats.connections--;
    return close(fd);
}

/* ---- per-request curl callbacks: data only, no user code ---- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct http_req *req = userdata;
    size_t n = size * nmemb;

    if (n > req->resp_max - req->resp_len) {
        req->too_big = 1;
        return 0; /* aborts the transfer */
    }
    if (req->resp_len + n + 1 > req->resp_cap) {
        size_t cap = req->resp_cap ? req->resp_cap : 1024;
        char *p;
        while (cap < req->resp_len + n + 1)
            cap *= 2;
        if (cap > req->resp_max + 1)
            cap = req->resp_max + 1;
        p = realloc(req->resp, cap);
        if (!p)
            return 0;
        req->resp = p;
        req->resp_cap = cap;
    }
    memcpy(req->resp + req->resp_len, ptr, n);
    req->resp_len += n;
    return n;
}

long http_parse_retry_after(const char *v, size_t n)
{
    char buf[64];
    long secs = 0;
    time_t when, now;
    size_t i;

    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= sizeof(buf))
        return -1;
    for (i = 0; i < n && v[i] >= '0' && v[i] <= '9'; i++)
        if (secs < 1000000000L)
            secs = secs * 10 + (v[i] - '0');
    if (i == n)
        return secs * 1000;
    memcpy(buf, v, n);
    buf[n] = '\0';
    when = curl_getdate(buf, NULL);
    if (when == -1)
        return -1;
    now = time(NULL);
    if (when <= now)
        return 0;
    if (when - now > 1000000000L)
        return 1000000000L * 1000;
    return (long)(when - now) * 1000;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *userdata)
{
    struct http_req *req = userdata;
    size_t n = size * nitems;
    size_t name = sizeof(RETRY_AFTER) - 1;

    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0)
        req->retry_after_ms = -1; /* a new response, after a 100 Continue say */
    else if (n > name && strncasecmp(line, RETRY_AFTER, name) == 0)
        req->retry_after_ms = http_parse_retry_after(line + name, n - name);
    return n;
}

/* ---- requests ---- */

static void req_destroy(struct http_req *req)
{
    curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    free(req->body);
    free(req->resp);
    free(req);
}

static int req_get(struct http_ctx *c, struct http_req **out)
{
    struct http_req *req = c->idle;

    if (req) {
        c->idle = req->next;
        c->stats.idle_handles--;
        req->next = NULL;
        *out = req;
        return CG_OK;
    }
    req = calloc(1, sizeof(*req));
    if (!req)
        return CG_ENOMEM;
    req->easy = curl_easy_init();
    if (!req->easy) {
        free(req);
        return CG_ENOMEM;
    }
    req->ctx = c;
    req->state = REQ_IDLE;
    c->stats.handles_created++;
    *out = req;
    return CG_OK;
}

/* Keeps the request for reuse, or frees it. Its easy handle is out of the
 * multi handle. */
static void recycle(struct http_ctx *c, struct http_req *req)
{
    if (c->closing || c->stats.idle_handles >= c->idle_max) {
        req_destroy(req);
        return;
    }
    curl_easy_reset(req->easy); /* also drops its copies of the URL and credentials */
    if (req->resp_cap > KEEP_BUFFER_MAX) {
        free(req->resp);
        req->resp = NULL;
        req->resp_cap = 0;
    }
    if (req->body_cap > KEEP_BUFFER_MAX) {
        free(req->body);
        req->body = NULL;
        req->body_cap = 0;
    }
    req->resp_len = 0;
    req->done = NULL;
    req->data = NULL;
    req_set_state(req, REQ_IDLE);
    req->next = c->idle;
    c->idle = req;
    c->stats.idle_handles++;
}

static void link_active(struct http_ctx *c, struct http_req *req)
{
    req->prev = NULL;
    req->next = c->active;
    if (c->active)
        c->active->prev = req;
    c->active = req;
}

static void unlink_active(struct http_ctx *c, struct http_req *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else
        c->active = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

/* "Expect:" stops curl from waiting for a 100 Continue on bodies over 1 KiB. */
static int set_headers(struct http_req *req, const char *ctype)
{
    struct curl_slist *h = req->headers, *n;
    const char *have = h && h->next ? h->next->data + strlen(CTYPE_PREFIX) : NULL;
    char *line;
    size_t len;

    if (h && (ctype ? have && strcmp(have, ctype) == 0 : !have))
        return CG_OK; /* same as last time */
    if (ctype && strpbrk(ctype, "\r\n"))
        return CG_EINVAL;
    curl_slist_free_all(req->headers);
    req->headers = NULL;
    h = curl_slist_append(NULL, "Expect:");
    if (!h)
        return CG_ENOMEM;
    if (ctype) {
        len = strlen(CTYPE_PREFIX) + strlen(ctype) + 1;
        line = malloc(len);
        if (!line) {
            curl_slist_free_all(h);
            return CG_ENOMEM;
        }
        snprintf(line, len, "%s%s", CTYPE_PREFIX, ctype);
        n = curl_slist_append(h, line);
        free(line);
        if (!n) {
            curl_slist_free_all(h);
            return CG_ENOMEM;
        }
    }
    req->headers = h;
    return CG_OK;
}

static int copy_body(struct http_req *req, const struct http_request *r)
{
    if (r->body_len + 1 > req->body_cap) {
        char *p = realloc(req->body, r->body_len + 1);
        if (!p)
            return CG_ENOMEM;
        req->body = p;
        req->body_cap = r->body_len + 1;
    }
    if (r->body_len)
        memcpy(req->body, r->body, r->body_len);
    req->body[r->body_len] = '\0';
    return CG_OK;
}

/* A POST to Twilio is never sent twice. When a reused connection dies
 * before any byte of the answer, libcurl 7.88 sends the whole request again
 * on a fresh connection, silently (Curl_retry_request), although the server
 * may have acted on it; curl 8.16's CURLOPT_FORBID_RETRY_ON_REUSE is not in
 * Debian 12. curl calls this before each time it sends the request: the
 * second time is that resend, refused here, and the transfer fails with
 * CURLE_ABORTED_BY_CALLBACK, reported as possibly sent. (Refusing to rewind
 * the body does the same, but makes curl write headers and body apart: one
 * more send per request.) */
static int on_prereq(void *arg, char *conn_primary_ip, char *conn_local_ip,
                     int conn_primary_port, int conn_local_port)
{
    struct http_req *req = arg;
    return ++req->sends > 1 ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

/* The CAs trusted for HTTPS, parsed once per process: Debian's libcurl
 * would parse the whole system bundle (about 145 certificates, ~50 ms of
 * CPU) for every new connection. Every connection of every loop's context
 * hands the same X509_STORE to its SSL_CTX; OpenSSL locks the store itself
 * for lookups, and the lock here only guards its lazy loading. */
struct http_cas {
    pthread_mutex_t lock;
    X509_STORE *store;
    char *file;  /* where store comes from; NULL: the bundle libcurl was built with */
    int failed;  /* it could not be loaded (logged once) */
};

/* The CAs: file if given, else the bundle Debian's libcurl was built with
 * (what it would have parsed per connection), else OpenSSL's default
 * paths. */
static X509_STORE *load_cas(const char *ca_file)
{
    X509_STORE *st = X509_STORE_new();
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    const char *file = ca_file && *ca_file ? ca_file : v->cainfo;
    int ok;

    if (!st)
        return NULL;
    if (file)
        ok = X509_STORE_load_file(st, file) == 1;
    else
        ok = X509_STORE_set_default_paths(st) == 1;
    if (!ok) {
        log_error("tls_cas_unreadable", "cannot load the CAs trusted for HTTPS from %s",
                  file ? file : "OpenSSL's default paths");
        X509_STORE_free(st);
        return NULL;
    }
    return st;
}

int http_cas_new(const char *ca_file, struct http_cas **out)
{
    struct http_cas *cas = calloc(1, sizeof(*cas));
    int rc = CG_ENOMEM;

    if (!cas)
        return CG_ENOMEM;
    pthread_mutex_init(&cas->lock, NULL);
    if (ca_file && *ca_file && !(cas->file = strdup(ca_file)))
        goto fail;
    /* A CA file given is read now, so a bad one stops startup; the system
     * bundle waits for the first HTTPS connection, so start time and idle
     * memory stay those of a gateway that has not sent yet. */
    if (cas->file && !(cas->store = load_cas(cas->file))) {
        rc = CG_ECONFIG;
        goto fail;
    }
    *out = cas;
    return CG_OK;

fail:
    http_cas_free(&cas);
    return rc;
}

void http_cas_free(struct http_cas **pcas)
{
    struct http_cas *cas = *pcas;
    if (!cas)
        return;
    X509_STORE_free(cas->store);
    free(cas->file);
    pthread_mutex_destroy(&cas->lock);
    free(cas);
    *pcas = NULL;
}

/* Any loop thread. The store, loaded at the first call; NULL if it cannot
 * be (then every HTTPS connection fails, and the log said why once). */
static X509_STORE *cas_store(struct http_cas *cas)
{
    X509_STORE *st;
    pthread_mutex_lock(&cas->lock);
    if (!cas->store && !cas->failed && !(cas->store = load_cas(cas->file)))
        cas->failed = 1;
    st = cas->store;
    pthread_mutex_unlock(&cas->lock);
    return st;
}

/* curl's hook into each new connection's SSL_CTX: trust the shared store
 * (SSL_CTX_set1_cert_store takes its own reference). */
static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *arg)
{
    struct http_ctx *c = arg;
    X509_STORE *st = cas_store(c->cas);
    if (!st)
        return CURLE_SSL_CACERT_BADFILE;
    SSL_CTX_set1_cert_store(ssl_ctx, st);
    return CURLE_OK;
}

static int req_setup(struct http_ctx *c, struct http_req *req, const struct http_request *r,
                     int post)
{
    struct shard *sh = req->shard;
    CURL *e = req->easy;
    CURLcode cc = CURLE_OK;
    size_t max = r->max_response_bytes ? r->max_response_bytes : HTTP_DEFAULT_MAX_RESPONSE;
    int rc;

    if (max > RESPONSE_LIMIT)
        max = RESPONSE_LIMIT;
    req->resp_len = 0;
    req->sends = 0;
    req->post = post;
    req->resp_max = max;
    req->too_big = 0;
    req->retry_after_ms = -1;
    req->errbuf[0] = '\0';
    if (post) {
        rc = copy_body(req, r);
        if (!rc)
            rc = set_headers(req, r->content_type);
        if (rc)
            return rc;
    }

#define SET(opt, val)                          \
    do {                                       \
        if (cc == CURLE_OK)                    \
            cc = curl_easy_setopt(e, opt, val); \
    } while (0)
    SET(CURLOPT_PRIVATE, (void *)req);
    SET(CURLOPT_URL, r->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SET(CURLOPT_OPENSOCKETDATA, (void *)sh);
    SET(CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    SET(CURLOPT_CLOSESOCKETDATA, (void *)sh);
    /* Looking for an idle connection to reuse walks every connection to
     * the host, in use or not: with thousands in flight that walk costs
     * more than all the rest of a request. Each running request holds at
     * most one connection (HTTP/1.1), so when there are no more
     * connections than requests running, one is idle only if a request
     * has yet to get its own (a moment after http_start): skip the walk,
     * since a connect costs less. Below the connection limit only, so a
     * fresh connection never has to wait for, or close, another. The new
     * connection is kept for reuse like any other. */
    SET(CURLOPT_FRESH_CONNECT,
        sh->connections <= sh->in_flight &&
                (sh->max_connections == 0 || sh->in_flight < sh->max_connections)
            ? 1L
            : 0L);
    SET(CURLOPT_ERRORBUFFER, req->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)req);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)req);
    SET(CURLOPT_TIMEOUT_MS, r->timeout_ms);
    if (r->connect_timeout_ms > 0)
        SET(CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms);
    /* Fails early when Content-Length already says too much; on_body
     * catches the rest. */
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
    if (c->user_agent)
        SET(CURLOPT_USERAGENT, c->user_agent);
    /* No file or directory for curl to parse: the store built once. */
    SET(CURLOPT_CAINFO, (char *)NULL);
    SET(CURLOPT_CAPATH, (char *)NULL);
    SET(CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
    SET(CURLOPT_SSL_CTX_DATA, (void *)c);
    SET(CURLOPT_SHARE, c->share);
    if (r->username) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET(CURLOPT_USERNAME, r->username);
        SET(CURLOPT_PASSWORD, r->password ? r->password : "");
    }
    if (post) {
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDS, (void *)req->body);
        SET(CURLOPT_PREREQFUNCTION, on_prereq);
        SET(CURLOPT_PREREQDATA, (void *)req);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        SET(CURLOPT_HTTPHEADER, req->headers);
    } else {
        SET(CURLOPT_HTTPGET, 1L);
    }
#undef SET
    if (cc == CURLE_OUT_OF_MEMORY)
        return CG_ENOMEM;
    return cc == CURLE_OK ? CG_OK : CG_EHTTP;
}

/* The rule callers use to decide whether a retry could send twice. */
static int maybe_sent(CURL *easy, CURLcode code)
{
    long bytes = 0;

    switch (code) {
    case CURLE_SEND_FAIL_REWIND:
        return 1; /* curl wanted to send it again: it went out once */
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        return 0;
    default:
        break;
    }
    /* Request bytes written to the socket, retries included. */
    if (curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &bytes) == CURLE_OK && bytes == 0)
        return 0;
    return 1;
}

static void fill_result(struct http_req *req, CURLcode code, const char *why,
                        struct http_result *res)
{
    long status = 0;
    double total = 0;

    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(req->easy, CURLINFO_TOTAL_TIME, &total);
    if (req->too_big || code == CURLE_FILESIZE_EXCEEDED) {
        code = CURLE_FILESIZE_EXCEEDED;
        snprintf(req->errbuf, sizeof(req->errbuf), "response body over %zu bytes",
                 req->resp_max);
    } else if (why) {
        snprintf(req->errbuf, sizeof(req->errbuf), "%s", why);
    }
    memset(res, 0, sizeof(*res));
    res->ok = code == CURLE_OK && status > 0;
    res->status = status;
    res->curl_code = code;
    /* on_prereq refused a resend: the request went out once already. */
    res->maybe_sent = code == CURLE_OK || req->sends > 1 ? 1 : maybe_sent(req->easy, code);
    if (req->sends > 1)
        snprintf(req->errbuf, sizeof(req->errbuf),
                 "the connection died after the request was sent; not sent again");
    res->retry_after_ms = req->retry_after_ms;
    res->total_ms = total * 1000.0;
    if (code == CURLE_OK && req->resp) {
        req->resp[req->resp_len] = '\0'; /* on_body keeps room for it */
        res->body = req->resp;
        res->body_len = req->resp_len;
    } else {
        res->body = ""; /* a partial body is of no use */
    }
    if (code == CURLE_OK)
        res->error = "";
    else
        res->error = req->errbuf[0] ? req->errbuf : curl_easy_strerror(code);
}

/* Takes the request out of curl and calls its done; `why` overrides curl's
 * error text. */
static void finish(struct http_req *req, CURLcode code, const char *why)
{
    struct http_ctx *c = req->ctx;
    struct http_result res;

    unlink_active(c, req);
    curl_multi_remove_handle(req->shard->multi, req->easy);
    req->shard->in_flight--;
    c->stats.in_flight--;
    fill_result(req, code, why, &res);
    req_set_state(req, REQ_FINISHING);
    req->done(&res, req->data);
    recycle(c, req);
}

static int shard_open(struct http_ctx *c, struct shard *sh, long max_total, long max_host)
{
    sh->ctx = c;
    sh->max_connections = max_total;
    sh->timer = evtimer_new(c->base, on_timer, sh);
    sh->multi = curl_multi_init();
    if (!sh->timer || !sh->multi)
        return CG_ENOMEM;
    if (curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, on_socket) ||
        curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, (void *)sh) ||
        curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, on_timer_set) ||
        curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, (void *)sh) ||
        curl_multi_setopt(sh->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING) ||
        curl_multi_setopt(sh->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host) ||
        curl_multi_setopt(sh->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_total))
        return CG_EHTTP;
    /* The idle-connection cache holds as many as may be open at once. */
    if (max_total > 0 && curl_multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS, max_total))
        return CG_EHTTP;
    return CG_OK;
}

/* Also undoes a shard_open that failed part-way. */
static void shard_close(struct shard *sh)
{
    if (sh->multi)
        curl_multi_cleanup(sh->multi);
    if (sh->timer)
        event_free(sh->timer);
    sh->multi = NULL;
    sh->timer = NULL;
}

/* ---- the API ---- */

int http_new(struct event_base *base, const struct http_ctx_opts *opts, struct http_ctx **out)
{
    static const struct http_ctx_opts none;
    struct http_ctx *c;
    int rc = CG_ENOMEM;

    if (!base || !out)
        return CG_EINVAL;
    if (!opts)
        opts = &none;
    c = calloc(1, sizeof(*c));
    if (!c)
        return CG_ENOMEM;
    c->base = base;
    c->idle_max = opts->idle_handles ? opts->idle_handles : HTTP_DEFAULT_IDLE_HANDLES;
    c->cas = opts->cas;
    if (!c->cas) {
        rc = http_cas_new(opts->ca_file, &c->own_cas);
        if (rc)
            goto fail;
        c->cas = c->own_cas;
    }
    rc = CG_ENOMEM;
    c->share = curl_share_init();
    if (!c->share || curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) ||
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS))
        goto fail;
    if (opts->user_agent && !(c->user_agent = strdup(opts->user_agent)))
        goto fail;
    /* Limits are per multi handle: each shard gets its share, rounded up. */
    long total = opts->max_total_connections > 0 ? opts->max_total_connections : 0;
    long host = opts->max_host_connections > 0 ? opts->max_host_connections : 0;
    c->nshards = total ? (unsigned)(total / SHARD_MIN_CONNECTIONS) : SHARDS_MAX;
    if (c->nshards < 1)
        c->nshards = 1;
    if (c->nshards > SHARDS_MAX)
        c->nshards = SHARDS_MAX;
    for (unsigned i = 0; i < c->nshards; i++) {
        rc = shard_open(c, &c->shards[i], (total + c->nshards - 1) / c->nshards,
                        (host + c->nshards - 1) / c->nshards);
        if (rc)
            goto fail;
    }
    *out = c;
    return CG_OK;

fail:
    for (unsigned i = 0; i < c->nshards; i++)
        shard_close(&c->shards[i]);
    if (c->share)
        curl_share_cleanup(c->share);
    http_cas_free(&c->own_cas);
    free(c->user_agent);
    free(c);
    return rc;
}

int http_start(struct http_ctx *c, const struct http_request *r, http_done_fn *done, void *data,
               struct http_req **out)
{
    LOOP_ASSERT_OWNER(c->base);
    struct http_req *req;
    int post, rc;

    if (!c || !r || !done || !r->method || !r->url || r->timeout_ms <= 0 ||
        r->connect_timeout_ms < 0 || (r->body_len && !r->body))
        return CG_EINVAL;
    if (c->closing)
        return CG_ESHUTDOWN;
    if (strcmp(r->method, "POST") == 0)
        post = 1;
    else if (strcmp(r->method, "GET") == 0)
        post = 0;
    else
        return CG_EINVAL;

    rc = req_get(c, &req);
    if (rc)
        return rc;
    /* The least busy shard: its connections are the likeliest to be idle. */
    req->shard = &c->shards[0];
    for (unsigned i = 1; i < c->nshards; i++)
        if (c->shards[i].in_flight < req->shard->in_flight)
            req->shard = &c->shards[i];
    rc = req_setup(c, req, r, post);
    if (rc)
        goto fail;
    /* Only arms our timer (on_timer_set): the transfer starts from the loop,
     * so done cannot run inside this call. */
    if (curl_multi_add_handle(req->shard->multi, req->easy) != CURLM_OK) {
        rc = CG_EHTTP;
        goto fail;
    }
    req->done = done;
    req->data = data;
    req->id = ++c->stats.requests_started;
    req->shard->in_flight++;
    c->stats.in_flight++;
    link_active(c, req);
    req_set_state(req, REQ_RUNNING);
    if (out)
        *out = req;
    return CG_OK;

fail:
    recycle(c, req);
    return rc;
}

int http_req_may_have_sent(const struct http_req *req)
{
    return req->sends > 0 || !req->post;
}

void http_cancel(struct http_req *req)
{
    struct http_ctx *c;

    if (!req || req->state != REQ_RUNNING)
        return;
    c = req->ctx;
    unlink_active(c, req);
    curl_multi_remove_handle(req->shard->multi, req->easy);
    req->shard->in_flight--;
    c->stats.in_flight--;
    recycle(c, req);
}

static void destroy(struct http_ctx *c)
{
    struct http_req *req;
    struct sock *s;

    while ((req = c->idle)) {
        c->idle = req->next;
        req_destroy(req);
    }
    for (unsigned i = 0; i < c->nshards; i++)
        shard_close(&c->shards[i]); /* closes pooled connections; may call on_socket */
    while ((s = c->socks)) {
        c->socks = s->next;
        event_free(s->ev);
        free(s);
    }
    while ((s = c->spare_socks)) {
        c->spare_socks = s->next;
        event_free(s->ev);
        free(s);
    }
    /* After every easy handle that used it is gone. */
    if (curl_share_cleanup(c->share) != CURLSHE_OK)
        log_error("http_share_in_use", "the TLS session cache outlived a handle");
    http_cas_free(&c->own_cas);
    free(c->user_agent);
    free(c);
}

void http_free(struct http_ctx **pc)
{
    struct http_ctx *c;

    if (!pc || !*pc)
        return;
    c = *pc;
    *pc = NULL;
    if (c->closing)
        return; /* called again from a done callback */
    c->closing = 1;
    c->depth++;
    while (c->active)
        finish(c->active, CURLE_ABORTED_BY_CALLBACK, "http client shut down");
    if (--c->depth == 0)
        destroy(c);
}

void http_get_stats(const struct http_ctx *c, struct http_stats *out)
{
    static const struct http_stats zero;
    *out = c ? c->stats : zero;
}
