/* http.c against a real libevent evhttp server on a second thread: a form
 * POST with basic auth arrives intact; statuses, bodies and Retry-After come
 * back; 200 concurrent requests share a few connections; bodies are bounded;
 * timeouts and refused connections say whether the request may have been
 * sent; cancel and free keep their promises; done never runs inside start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loop/loop.h"
#include "core/error.h"
#include "twilio/http.h"

#define FORM_BODY "To=%2B15005550006&From=%2B15005550001&Body=hello+world%21&MediaUrl=a&MediaUrl=b"
#define FORM_CTYPE "application/x-www-form-urlencoded"
#define FORM_AUTH "Basic QUMxMjM6czNjcmV0" /* AC123:s3cret */
#define CREATED_JSON "{\"sid\":\"SM123\",\"status\":\"queued\"}"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the server, on its own thread and base ---- */

#define MAX_PORTS 1024

static struct {
    struct event_base *base;
    struct evhttp *http;
    pthread_t thread;
    int port;
    pthread_mutex_t mu;
    /* under mu */
    int requests;
    int nports;
    ev_uint16_t ports[MAX_PORTS]; /* distinct client ports: one per connection */
    int delayed;                  /* slow replies not sent yet */
    int cuts;                     /* requests to /cut: read, then the connection closed */
    char method[8], auth[128], ctype[128], body[512];
} srv;

static void srv_reset(void)
{
    pthread_mutex_lock(&srv.mu);
    srv.requests = 0;
    srv.nports = 0;
    srv.method[0] = srv.auth[0] = srv.ctype[0] = srv.body[0] = '\0';
    pthread_mutex_unlock(&srv.mu);
}

static int srv_get(const int *field)
{
    pthread_mutex_lock(&srv.mu);
    int v = *field;
    pthread_mutex_unlock(&srv.mu);
    return v;
}

static void reply(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, strlen(text));
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static long query_long(const char *query, const char *name)
{
    struct evkeyvalq q;
    const char *v;
    long n = 0;
    if (!query || evhttp_parse_query_str(query, &q))
        return 0;
    v = evhttp_find_header(&q, name);
    if (v)
        n = strtol(v, NULL, 10);
    evhttp_clear_headers(&q);
    return n;
}

static void copy_header(char *dst, size_t size, struct evkeyvalq *h, const char *name)
{
    const char *v = evhttp_find_header(h, name);
    snprintf(dst, size, "%s", v ? v : "");
}

static void send_late(evutil_socket_t fd, short events, void *arg)
{
    reply(arg, 200, "OK", "late");
    pthread_mutex_lock(&srv.mu);
    srv.delayed--;
    pthread_mutex_unlock(&srv.mu);
}

/* Closes the connection of a request it read and did not answer. */
static void cut_late(evutil_socket_t fd, short events, void *arg)
{
    evhttp_connection_free(evhttp_request_get_connection(arg));
}

static void on_request(struct evhttp_request *req, void *arg)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = evhttp_uri_get_path(uri);
    const char *query = evhttp_uri_get_query(uri);
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    char *peer;
    ev_uint16_t port;
    int i;

    evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &port);
    pthread_mutex_lock(&srv.mu);
    srv.requests++;
    for (i = 0; i < srv.nports && srv.ports[i] != port; i++)
        ;
    if (i == srv.nports && srv.nports < MAX_PORTS)
        srv.ports[srv.nports++] = port;
    pthread_mutex_unlock(&srv.mu);

    if (strcmp(path, "/form") == 0) {
        struct evbuffer *b = evhttp_request_get_input_buffer(req);
        int ok;
        pthread_mutex_lock(&srv.mu);
        snprintf(srv.method, sizeof(srv.method), "%s",
                 evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "other");
        copy_header(srv.auth, sizeof(srv.auth), in, "Authorization");
        copy_header(srv.ctype, sizeof(srv.ctype), in, "Content-Type");
        size_t n = evbuffer_get_length(b);
        if (n >= sizeof(srv.body))
            n = sizeof(srv.body) - 1;
        evbuffer_copyout(b, srv.body, n);
        srv.body[n] = '\0';
        ok = strcmp(srv.method, "POST") == 0 && strcmp(srv.auth, FORM_AUTH) == 0 &&
             strcmp(srv.ctype, FORM_CTYPE) == 0 && strcmp(srv.body, FORM_BODY) == 0;
        pthread_mutex_unlock(&srv.mu);
        if (!ok) {
            reply(req, 400, "Bad Request", "mismatch");
            return;
        }
        evhttp_add_header(out, "Content-Type", "application/json");
        reply(req, 201, "Created", CREATED_JSON);
    } else if (strcmp(path, "/cut") == 0) {
        /* A server that acted on the request, then lost the connection. */
        struct timeval now = {0, 0};
        pthread_mutex_lock(&srv.mu);
        srv.cuts++;
        pthread_mutex_unlock(&srv.mu);
        event_base_once(srv.base, -1, EV_TIMEOUT, cut_late, req, &now);
    } else if (strcmp(path, "/429") == 0) {
        evhttp_add_header(out, "Retry-After", "2");
        reply(req, 429, "Too Many Requests", "{\"code\":20429}");
    } else if (strcmp(path, "/503date") == 0) {
        char date[64];
        time_t t = time(NULL) + 3;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        evhttp_add_header(out, "retry-after", date);
        reply(req, 503, "Service Unavailable", "busy");
    } else if (strcmp(path, "/size") == 0) {
        long n = query_long(query, "n");
        char *text = malloc((size_t)n + 1);
        memset(text, 'x', (size_t)n);
        text[n] = '\0';
        reply(req, 200, "OK", text);
        free(text);
    } else if (strcmp(path, "/chunked") == 0) {
        long n = query_long(query, "n");
        char chunk[500];
        memset(chunk, 'y', sizeof(chunk));
        evhttp_send_reply_start(req, 200, "OK");
        while (n > 0) {
            struct evbuffer *b = evbuffer_new();
            evbuffer_add(b, chunk, n < (long)sizeof(chunk) ? (size_t)n : sizeof(chunk));
            n -= (long)sizeof(chunk);
            evhttp_send_reply_chunk(req, b);
            evbuffer_free(b);
        }
        evhttp_send_reply_end(req);
    } else if (strcmp(path, "/slow") == 0) {
        long ms = query_long(query, "ms");
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        pthread_mutex_lock(&srv.mu);
        srv.delayed++;
        pthread_mutex_unlock(&srv.mu);
        event_base_once(srv.base, -1, EV_TIMEOUT, send_late, req, &tv);
    } else {
        reply(req, 200, "OK", "ok");
    }
}

static void *srv_main(void *arg)
{
    event_base_loop(srv.base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static int srv_start(void **state)
{
    struct evhttp_bound_socket *bound;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);

    evthread_use_pthreads();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_init(&srv.mu, NULL);
    srv.base = event_base_new();
    srv.http = evhttp_new(srv.base);
    evhttp_set_gencb(srv.http, on_request, NULL);
    bound = evhttp_bind_socket_with_handle(srv.http, "127.0.0.1", 0);
    if (!bound)
        return -1;
    getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&a, &len);
    srv.port = ntohs(a.sin_port);
    return pthread_create(&srv.thread, NULL, srv_main, NULL);
}

static int srv_stop(void **state)
{
    event_base_loopbreak(srv.base);
    pthread_join(srv.thread, NULL);
    evhttp_free(srv.http);
    event_base_free(srv.base);
    pthread_mutex_destroy(&srv.mu);
    curl_global_cleanup();
    return 0;
}

/* ---- the client, on this thread ---- */

static struct event_base *base;
static struct event *tick;
static struct http_ctx *ctx;
static int in_start, reentered;
/* Set by the teardown: a failed test's results live in a frame longjmp left,
 * so callbacks for what it left in flight must not touch them. */
static int tearing_down;

struct got {
    int calls;
    int ok;
    long status;
    char body[2048];
    size_t body_len;
    int curl_code;
    int maybe_sent;
    char error[CURL_ERROR_SIZE];
    long retry_after_ms;
    double total_ms;
};

static void on_done(const struct http_result *res, void *data)
{
    struct got *g = data;
    if (tearing_down)
        return;
    if (in_start)
        reentered++;
    g->calls++;
    g->ok = res->ok;
    g->status = res->status;
    g->body_len = res->body_len;
    snprintf(g->body, sizeof(g->body), "%s", res->body);
    g->curl_code = res->curl_code;
    g->maybe_sent = res->maybe_sent;
    snprintf(g->error, sizeof(g->error), "%s", res->error);
    g->retry_after_ms = res->retry_after_ms;
    g->total_ms = res->total_ms;
}

static void url(char *buf, size_t size, const char *path)
{
    snprintf(buf, size, "http://127.0.0.1:%d%s", srv.port, path);
}

static struct http_request get_req(const char *u)
{
    struct http_request r = {.method = "GET", .url = u, .timeout_ms = 5000,
                             .connect_timeout_ms = 2000};
    return r;
}

static int start(const struct http_request *r, http_done_fn *done, void *data,
                 struct http_req **out)
{
    in_start = 1;
    int rc = http_start(ctx, r, done, data, out);
    in_start = 0;
    return rc;
}

static void on_tick(evutil_socket_t fd, short events, void *arg)
{
}

/* Runs the client loop until *counter reaches target, or ms pass. */
static int run_until(const int *counter, int target, int ms)
{
    long long end = now_ms() + ms;
    while (*counter < target && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    return *counter >= target;
}

static void run_for(int ms)
{
    long long end = now_ms() + ms;
    while (now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
}

/* Server-side condition, polled while the client loop runs. */
static int run_until_srv(const int *field, int target, int ms)
{
    long long end = now_ms() + ms;
    while (srv_get(field) < target && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    return srv_get(field) >= target;
}

static int new_client(const struct http_ctx_opts *opts)
{
    base = event_base_new();
    loop_own_base(base); /* this test drives the base itself */
    tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 5000};
    event_add(tick, &tv);
    srv_reset();
    reentered = 0;
    tearing_down = 0;
    return http_new(base, opts, &ctx);
}

static int client_setup(void **state)
{
    struct http_ctx_opts opts = {.user_agent = "commsgate-test/1"};
    return new_client(&opts) == CG_OK ? 0 : -1;
}

static int client_setup_limited(void **state)
{
    struct http_ctx_opts opts = {.max_host_connections = 8, .max_total_connections = 8,
                                 .user_agent = "commsgate-test/1"};
    return new_client(&opts) == CG_OK ? 0 : -1;
}

static int client_teardown(void **state)
{
    long long end = now_ms() + 3000;
    tearing_down = 1;
    http_free(&ctx);
    /* Let slow replies go out, so the server frees what it holds. */
    while (srv_get(&srv.delayed) > 0 && now_ms() < end)
        usleep(5000);
    event_free(tick);
    event_base_free(base);
    base = NULL;
    return 0;
}

/* ---- tests ---- */

static void test_post_form_basic_auth(void **state)
{
    char u[128] = "";
    struct got g = {0};
    struct http_request r = {.method = "POST", .body = FORM_BODY, .body_len = strlen(FORM_BODY),
                             .content_type = FORM_CTYPE, .username = "AC123",
                             .password = "s3cret", .timeout_ms = 5000,
                             .connect_timeout_ms = 2000, .max_response_bytes = 4096};
    url(u, sizeof(u), "/form");
    r.url = u;
    assert_int_equal(start(&r, on_done, &g, NULL), CG_OK);
    assert_int_equal(g.calls, 0);
    assert_true(run_until(&g.calls, 1, 5000));

    /* Copied out first: a failed assert must not leave the mutex held. */
    char method[sizeof(srv.method)], auth[sizeof(srv.auth)], ctype[sizeof(srv.ctype)],
        body[sizeof(srv.body)];
    pthread_mutex_lock(&srv.mu);
    memcpy(method, srv.method, sizeof(method));
    memcpy(auth, srv.auth, sizeof(auth));
    memcpy(ctype, srv.ctype, sizeof(ctype));
    memcpy(body, srv.body, sizeof(body));
    pthread_mutex_unlock(&srv.mu);
    assert_string_equal(method, "POST");
    assert_string_equal(auth, FORM_AUTH);
    assert_string_equal(ctype, FORM_CTYPE);
    assert_string_equal(body, FORM_BODY);

    assert_true(g.ok);
    assert_int_equal(g.status, 201);
    assert_string_equal(g.body, CREATED_JSON);
    assert_int_equal(g.body_len, strlen(CREATED_JSON));
    assert_int_equal(g.curl_code, CURLE_OK);
    assert_string_equal(g.error, "");
    assert_int_equal(g.maybe_sent, 1);
    assert_int_equal(g.retry_after_ms, -1);
    assert_true(g.total_ms > 0);
    assert_int_equal(reentered, 0);

    /* The pooled request is reused: same content type, then none at all. */
    struct got g2 = {0};
    assert_int_equal(start(&r, on_done, &g2, NULL), CG_OK);
    assert_true(run_until(&g2.calls, 1, 5000));
    assert_int_equal(g2.status, 201);
    struct http_stats st;
    http_get_stats(ctx, &st);
    assert_int_equal(st.handles_created, 1);
    assert_int_equal(st.requests_started, 2);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.idle_handles, 1);
}

/* A reused connection that dies after the server read the request, before
 * any byte of the answer: libcurl 7.88 would send the POST again on a fresh
 * connection. It must fail instead, as possibly sent, with the server having
 * seen it once; and the next request still goes out in one write. */
static void test_cut_after_read_is_never_resent(void **state)
{
    char u[128] = "", cut[128] = "";
    struct got g = {0}, g2 = {0};
    struct http_request r = {.method = "POST", .body = FORM_BODY, .body_len = strlen(FORM_BODY),
                             .content_type = FORM_CTYPE, .username = "AC123",
                             .password = "s3cret", .timeout_ms = 5000};
    url(u, sizeof(u), "/form");
    url(cut, sizeof(cut), "/cut");
    srv_reset();
    pthread_mutex_lock(&srv.mu);
    srv.cuts = 0;
    pthread_mutex_unlock(&srv.mu);
    r.url = u;
    assert_int_equal(start(&r, on_done, &g, NULL), CG_OK);
    assert_true(run_until(&g.calls, 1, 5000));
    assert_int_equal(g.status, 201); /* the connection stays open for the next */
    r.url = cut;
    assert_int_equal(start(&r, on_done, &g2, NULL), CG_OK);
    assert_true(run_until(&g2.calls, 1, 5000));
    pthread_mutex_lock(&srv.mu);
    int cuts = srv.cuts, nports = srv.nports;
    pthread_mutex_unlock(&srv.mu);
    assert_int_equal(nports, 1); /* it did go out on the reused connection */
    assert_int_equal(cuts, 1);   /* and was not sent again */
    assert_false(g2.ok);
    assert_int_equal(g2.curl_code, CURLE_ABORTED_BY_CALLBACK); /* the resend, refused */
    assert_int_equal(g2.maybe_sent, 1);
    assert_non_null(strstr(g2.error, "not sent again"));
}

static void test_retry_after(void **state)
{
    char u[128] = "";
    struct got g = {0}, d = {0}, after = {0};
    struct http_request r = get_req(u);

    url(u, sizeof(u), "/429");
    assert_int_equal(start(&r, on_done, &g, NULL), CG_OK);
    assert_true(run_until(&g.calls, 1, 5000));
    assert_true(g.ok); /* an HTTP status arrived; the status says the rest */
    assert_int_equal(g.status, 429);
    assert_int_equal(g.retry_after_ms, 2000);
    assert_string_equal(g.body, "{\"code\":20429}");

    url(u, sizeof(u), "/503date");
    assert_int_equal(start(&r, on_done, &d, NULL), CG_OK);
    assert_true(run_until(&d.calls, 1, 5000));
    assert_int_equal(d.status, 503);
    assert_true(d.retry_after_ms >= 1000 && d.retry_after_ms <= 4000);

    /* Same pooled handle, no header: nothing left over. */
    url(u, sizeof(u), "/ok");
    assert_int_equal(start(&r, on_done, &after, NULL), CG_OK);
    assert_true(run_until(&after.calls, 1, 5000));
    assert_int_equal(after.status, 200);
    assert_int_equal(after.retry_after_ms, -1);
}

struct tally {
    int calls, ok200;
};

static void on_tally(const struct http_result *res, void *data)
{
    struct tally *t = data;
    if (tearing_down)
        return;
    if (in_start)
        reentered++;
    t->calls++;
    if (res->ok && res->status == 200 && strcmp(res->body, "ok") == 0)
        t->ok200++;
}

/* n requests to r, each answered 200 "ok" before the next starts. */
static void one_at_a_time(const struct http_request *r, int n)
{
    for (int i = 0; i < n; i++) {
        struct tally one = {0};
        assert_int_equal(start(r, on_tally, &one, NULL), CG_OK);
        assert_true(run_until(&one.calls, 1, 5000));
        assert_int_equal(one.ok200, 1);
    }
}

#define CONCURRENT 200

static void test_concurrent_reuse(void **state)
{
    char u[128] = "";
    struct tally t = {0};
    struct http_request r = get_req(u);
    struct http_stats st;

    r.timeout_ms = 20000;
    url(u, sizeof(u), "/ok");
    for (int i = 0; i < CONCURRENT; i++)
        assert_int_equal(start(&r, on_tally, &t, NULL), CG_OK);
    http_get_stats(ctx, &st);
    assert_int_equal(st.in_flight, CONCURRENT);
    assert_true(run_until(&t.calls, CONCURRENT, 20000));
    assert_int_equal(t.ok200, CONCURRENT);
    assert_int_equal(srv_get(&srv.requests), CONCURRENT);
    int conns = srv_get(&srv.nports);
    assert_true(conns >= 1 && conns <= 8);
    http_get_stats(ctx, &st);
    assert_int_equal(st.connections, conns);

    http_get_stats(ctx, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.idle_handles, HTTP_DEFAULT_IDLE_HANDLES);
    unsigned long created = st.handles_created;

    /* One at a time now: pooled handles and kept-alive connections only. */
    one_at_a_time(&r, 20);
    http_get_stats(ctx, &st);
    assert_int_equal(st.handles_created, created);
    assert_int_equal(srv_get(&srv.nports), conns);
    assert_int_equal(reentered, 0);
}

static void test_response_bounded(void **state)
{
    char u[128] = "";
    struct http_request r = get_req(u);
    struct got exact = {0}, over = {0}, chunked_ok = {0}, chunked_over = {0};

    r.max_response_bytes = 1024;
    url(u, sizeof(u), "/size?n=1024");
    assert_int_equal(start(&r, on_done, &exact, NULL), CG_OK);
    url(u, sizeof(u), "/size?n=1025");
    assert_int_equal(start(&r, on_done, &over, NULL), CG_OK);
    url(u, sizeof(u), "/chunked?n=1000");
    assert_int_equal(start(&r, on_done, &chunked_ok, NULL), CG_OK);
    url(u, sizeof(u), "/chunked?n=5000");
    assert_int_equal(start(&r, on_done, &chunked_over, NULL), CG_OK);

    assert_true(run_until(&exact.calls, 1, 5000));
    assert_true(run_until(&over.calls, 1, 5000));
    assert_true(run_until(&chunked_ok.calls, 1, 5000));
    assert_true(run_until(&chunked_over.calls, 1, 5000));

    assert_true(exact.ok);
    assert_int_equal(exact.body_len, 1024);
    assert_int_equal(strlen(exact.body), 1024);
    assert_true(chunked_ok.ok);
    assert_int_equal(chunked_ok.body_len, 1000);

    assert_false(over.ok); /* Content-Length said too much */
    assert_int_equal(over.curl_code, CURLE_FILESIZE_EXCEEDED);
    assert_int_equal(over.body_len, 0);
    assert_string_not_equal(over.error, "");
    assert_false(chunked_over.ok); /* found while reading */
    assert_int_equal(chunked_over.curl_code, CURLE_FILESIZE_EXCEEDED);
    assert_int_equal(chunked_over.body_len, 0);
    assert_int_equal(chunked_over.maybe_sent, 1);
}

static void test_timeout_maybe_sent(void **state)
{
    char u[128] = "";
    struct http_request r = get_req(u);
    struct got g = {0};

    r.timeout_ms = 200;
    url(u, sizeof(u), "/slow?ms=700");
    assert_int_equal(start(&r, on_done, &g, NULL), CG_OK);
    assert_true(run_until(&g.calls, 1, 3000));
    assert_false(g.ok);
    assert_int_equal(g.curl_code, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(g.status, 0);
    assert_int_equal(g.maybe_sent, 1); /* the server had it: a retry could double-send */
    assert_string_not_equal(g.error, "");
    assert_true(g.total_ms >= 150 && g.total_ms < 650);
    assert_int_equal(srv_get(&srv.requests), 1);
}

static void test_refused_not_sent(void **state)
{
    /* Bound but not listening: connecting is refused, and no one can take
     * the port meanwhile. */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char u[128] = "";
    struct http_request r = get_req(u);
    struct got g = {0};

    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/x", ntohs(a.sin_port));
    r.method = "POST";
    r.body = "To=1";
    r.body_len = 4;
    assert_int_equal(start(&r, on_done, &g, NULL), CG_OK);
    assert_true(run_until(&g.calls, 1, 3000));
    close(fd);
    assert_false(g.ok);
    assert_int_equal(g.curl_code, CURLE_COULDNT_CONNECT);
    assert_int_equal(g.status, 0);
    assert_int_equal(g.maybe_sent, 0);
    assert_string_not_equal(g.error, "");
}

/* Shutdown's question (twilio_on_wire): may the server have this POST? Not
 * while its TLS handshake is still going; yes once the server got it. */
static void test_may_have_sent(void **state)
{
    /* Listening but never answering: the TCP connect succeeds (the kernel
     * accepts it), the TLS handshake waits for a ServerHello forever. */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char tls[128], u[128] = "";
    struct http_request r = get_req(u);
    struct got hs = {0}, sent = {0};
    struct http_req *req_hs = NULL, *req_sent = NULL;

    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 8), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    snprintf(tls, sizeof(tls), "https://127.0.0.1:%d/x", ntohs(a.sin_port));
    r.method = "POST";
    r.body = "To=1";
    r.body_len = 4;
    r.url = tls;
    assert_int_equal(start(&r, on_done, &hs, &req_hs), CG_OK);
    url(u, sizeof(u), "/slow?ms=2000");
    r.url = u;
    assert_int_equal(start(&r, on_done, &sent, &req_sent), CG_OK);
    assert_true(run_until_srv(&srv.requests, 1, 3000));
    run_for(100); /* the handshake's ClientHello is out, unanswered */
    assert_false(http_req_may_have_sent(req_hs));
    assert_true(http_req_may_have_sent(req_sent));
    http_cancel(req_hs);
    http_cancel(req_sent);
    close(fd);
    assert_int_equal(hs.calls + sent.calls, 0);
}

static void test_cancel(void **state)
{
    char u[128] = "";
    struct http_request r = get_req(u);
    struct got early = {0}, late = {0}, control = {0};
    struct http_req *req_early = NULL, *req_late = NULL;
    struct http_stats st;

    url(u, sizeof(u), "/slow?ms=150");
    assert_int_equal(start(&r, on_done, &early, &req_early), CG_OK);
    assert_int_equal(start(&r, on_done, &late, &req_late), CG_OK);
    assert_non_null(req_early);
    assert_non_null(req_late);
    http_cancel(req_early); /* before the loop ever ran it */
    assert_true(run_until_srv(&srv.requests, 1, 3000));
    http_cancel(req_late); /* after the server got it */
    http_cancel(NULL);

    url(u, sizeof(u), "/ok");
    assert_int_equal(start(&r, on_done, &control, NULL), CG_OK);
    assert_true(run_until(&control.calls, 1, 3000));
    run_for(300); /* past the slow replies */
    assert_int_equal(early.calls, 0);
    assert_int_equal(late.calls, 0);
    assert_true(control.ok);
    http_get_stats(ctx, &st);
    assert_int_equal(st.in_flight, 0);
}

static struct http_ctx *ctx_copy;
static int start_rc_in_done;

static void on_done_restart(const struct http_result *res, void *data)
{
    struct http_request r = get_req("http://127.0.0.1:1/");
    if (tearing_down)
        return;
    on_done(res, data);
    start_rc_in_done = http_start(ctx_copy, &r, on_done, data, NULL);
}

static void test_free_in_flight(void **state)
{
    char u[128] = "";
    struct http_request r = get_req(u);
    struct got sent[3] = {{0}}, unsent[2] = {{0}};

    url(u, sizeof(u), "/slow?ms=400");
    for (int i = 0; i < 3; i++)
        assert_int_equal(start(&r, on_done, &sent[i], NULL), CG_OK);
    assert_true(run_until_srv(&srv.requests, 3, 3000));
    url(u, sizeof(u), "/ok");
    for (int i = 0; i < 2; i++)
        assert_int_equal(start(&r, on_done_restart, &unsent[i], NULL), CG_OK);

    ctx_copy = ctx;
    start_rc_in_done = -1;
    http_free(&ctx);
    assert_null(ctx);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sent[i].calls, 1);
        assert_false(sent[i].ok);
        assert_int_equal(sent[i].curl_code, CURLE_ABORTED_BY_CALLBACK);
        assert_int_equal(sent[i].maybe_sent, 1);
        assert_string_not_equal(sent[i].error, "");
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(unsent[i].calls, 1); /* the restart from done was refused */
        assert_false(unsent[i].ok);
        assert_int_equal(unsent[i].curl_code, CURLE_ABORTED_BY_CALLBACK);
        assert_int_equal(unsent[i].maybe_sent, 0);
    }
    assert_int_equal(start_rc_in_done, CG_ESHUTDOWN);
    http_free(&ctx); /* no-op */
    http_free(NULL);
    run_for(50); /* nothing of the freed client may fire */
}

/* With no connection limit, a burst of slow requests gets a connection
 * each (curl's search for an idle one is skipped, since none can be idle),
 * and once they are done, later requests reuse those connections rather
 * than opening more: skipping the search never stops reuse. */
#define BURST 50

static void test_burst_then_reuse(void **state)
{
    char u[128] = "";
    struct tally t = {0};
    struct http_request r = get_req(u);
    struct http_stats st;

    r.timeout_ms = 20000;
    url(u, sizeof(u), "/slow?ms=300");
    for (int i = 0; i < BURST; i++)
        assert_int_equal(start(&r, on_tally, &t, NULL), CG_OK);
    assert_true(run_until(&t.calls, BURST, 20000));
    assert_int_equal(t.calls, BURST);
    assert_int_equal(srv_get(&srv.requests), BURST);
    assert_int_equal(srv_get(&srv.nports), BURST);
    /* curl keeps some of them (its pool shrinks as handles leave). */
    http_get_stats(ctx, &st);
    unsigned kept = st.connections;
    assert_true(kept >= 1 && kept <= BURST);

    url(u, sizeof(u), "/ok");
    one_at_a_time(&r, 20);
    assert_int_equal(srv_get(&srv.nports), BURST);
    http_get_stats(ctx, &st);
    assert_true(st.connections >= 1 && st.connections <= kept); /* none opened */
}

/* A limit of 64 is shared out over 4 multi handles of 16: 100 slow requests
 * at once never hold more than 64 connections, all of them finish, and the
 * connections are reused afterwards. */
static int client_setup_64(void **state)
{
    struct http_ctx_opts opts = {.max_total_connections = 64, .user_agent = "commsgate-test/1"};
    return new_client(&opts) == CG_OK ? 0 : -1;
}

static void test_limit_shared_over_handles(void **state)
{
    char u[128] = "";
    struct tally t = {0};
    struct http_request r = get_req(u);
    struct http_stats st;
    unsigned most = 0;

    r.timeout_ms = 20000;
    url(u, sizeof(u), "/slow?ms=200");
    for (int i = 0; i < 100; i++)
        assert_int_equal(start(&r, on_tally, &t, NULL), CG_OK);
    while (t.calls < 100 && run_until(&t.calls, t.calls + 1, 5000)) {
        http_get_stats(ctx, &st);
        if (st.connections > most)
            most = st.connections;
    }
    assert_int_equal(t.calls, 100);
    assert_int_equal(srv_get(&srv.requests), 100);
    assert_true(most <= 64);
    assert_true(srv_get(&srv.nports) <= 64);
    int conns = srv_get(&srv.nports);
    url(u, sizeof(u), "/ok");
    one_at_a_time(&r, 10);
    assert_int_equal(srv_get(&srv.nports), conns);
}

static void test_free_reused_handle_not_sent(void **state)
{
    char u[128] = "";
    struct http_request r = get_req(u);
    struct got warm = {0}, g = {0};
    struct http_stats st;

    url(u, sizeof(u), "/ok");
    assert_int_equal(start(&r, on_done, &warm, NULL), CG_OK);
    assert_true(run_until(&warm.calls, 1, 3000));
    assert_int_equal(start(&r, on_done, &g, NULL), CG_OK);
    http_get_stats(ctx, &st);
    assert_int_equal(st.handles_created, 1); /* it took the used handle */
    http_free(&ctx);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.curl_code, CURLE_ABORTED_BY_CALLBACK);
    assert_int_equal(g.maybe_sent, 0);
}

static struct got free_first = {0}, free_second = {0};

static void on_done_free(const struct http_result *res, void *data)
{
    if (tearing_down)
        return;
    on_done(res, data);
    http_free(&ctx);
}

static void test_free_from_done(void **state)
{
    char u[128] = "";
    struct http_request r = get_req(u);

    memset(&free_first, 0, sizeof(free_first));
    memset(&free_second, 0, sizeof(free_second));
    url(u, sizeof(u), "/ok");
    assert_int_equal(start(&r, on_done_free, &free_first, NULL), CG_OK);
    url(u, sizeof(u), "/slow?ms=300");
    assert_int_equal(start(&r, on_done, &free_second, NULL), CG_OK);
    assert_true(run_until(&free_first.calls, 1, 3000));
    assert_null(ctx);
    assert_true(free_first.ok);
    assert_int_equal(free_second.calls, 1);
    assert_int_equal(free_second.curl_code, CURLE_ABORTED_BY_CALLBACK);
    run_for(50);
}

static int chain_left, chain_rc;
static struct got chain_got;

/* No asserts in callbacks: a longjmp out of the event loop would wedge it. */
static void on_chain(const struct http_result *res, void *data)
{
    if (tearing_down)
        return;
    on_done(res, &chain_got);
    if (res->ok && --chain_left > 0) {
        struct http_request r = get_req(data);
        chain_rc |= http_start(ctx, &r, on_chain, data, NULL);
    }
}

static void test_start_from_done(void **state)
{
    char u[128] = "";
    struct http_request r = get_req(u);
    struct http_stats st;

    memset(&chain_got, 0, sizeof(chain_got));
    chain_left = 5;
    chain_rc = CG_OK;
    url(u, sizeof(u), "/ok");
    assert_int_equal(start(&r, on_chain, u, NULL), CG_OK);
    assert_true(run_until(&chain_got.calls, 5, 5000));
    assert_int_equal(chain_left, 0);
    assert_int_equal(chain_rc, CG_OK);
    http_get_stats(ctx, &st);
    assert_true(st.handles_created <= 2);
    assert_int_equal(srv_get(&srv.nports), 1);
}

static void test_done_never_inside_start(void **state)
{
    char u[128] = "";
    struct http_request r = get_req(u);
    struct got proto = {0}, malformed = {0}, none = {0};

    /* curl finds these wrong only once it runs: still through the loop */
    snprintf(u, sizeof(u), "ftp://127.0.0.1:%d/x", srv.port);
    assert_int_equal(start(&r, on_done, &proto, NULL), CG_OK);
    snprintf(u, sizeof(u), "http://[::1");
    assert_int_equal(start(&r, on_done, &malformed, NULL), CG_OK);
    assert_int_equal(proto.calls + malformed.calls, 0);
    assert_true(run_until(&proto.calls, 1, 3000));
    assert_true(run_until(&malformed.calls, 1, 3000));
    assert_int_equal(reentered, 0);
    assert_false(proto.ok);
    assert_int_equal(proto.curl_code, CURLE_UNSUPPORTED_PROTOCOL);
    assert_int_equal(proto.maybe_sent, 0);
    assert_false(malformed.ok);
    assert_int_equal(malformed.curl_code, CURLE_URL_MALFORMAT);
    assert_int_equal(malformed.maybe_sent, 0);

    /* Refused at once: done is never called. */
    url(u, sizeof(u), "/ok");
    r.method = "PUT";
    assert_int_equal(start(&r, on_done, &none, NULL), CG_EINVAL);
    r.method = "GET";
    r.timeout_ms = 0;
    assert_int_equal(start(&r, on_done, &none, NULL), CG_EINVAL);
    r.timeout_ms = 1000;
    assert_int_equal(start(&r, NULL, &none, NULL), CG_EINVAL);
    r.method = "POST";
    r.content_type = "text/plain\r\nX-Evil: 1";
    assert_int_equal(start(&r, on_done, &none, NULL), CG_EINVAL);
    run_for(100);
    assert_int_equal(none.calls, 0);
    struct http_stats st;
    http_get_stats(ctx, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.requests_started, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_post_form_basic_auth, client_setup, client_teardown),
        cmocka_unit_test_setup_teardown(test_cut_after_read_is_never_resent, client_setup,
                                        client_teardown),
        cmocka_unit_test_setup_teardown(test_retry_after, client_setup, client_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_reuse, client_setup_limited,
                                        client_teardown),
        cmocka_unit_test_setup_teardown(test_response_bounded, client_setup, client_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_maybe_sent, client_setup, client_teardown),
        cmocka_unit_test_setup_teardown(test_refused_not_sent, client_setup, client_teardown),
        cmocka_unit_test_setup_teardown(test_cancel, client_setup, client_teardown),
        cmocka_unit_test_setup_teardown(test_may_have_sent, client_setup, client_teardown),
        cmocka_unit_test_setup_teardown(test_free_in_flight, client_setup, client_teardown),
        cmocka_unit_test_setup_teardown(test_burst_then_reuse, client_setup, client_teardown),
        cmocka_unit_test_setup_teardown(test_limit_shared_over_handles, client_setup_64,
                                        client_teardown),
        cmocka_unit_test_setup_teardown(test_free_reused_handle_not_sent, client_setup,
                                        client_teardown),
        cmocka_unit_test_setup_teardown(test_free_from_done, client_setup, client_teardown),
        cmocka_unit_test_setup_teardown(test_start_from_done, client_setup, client_teardown),
        cmocka_unit_test_setup_teardown(test_done_never_inside_start, client_setup,
                                        client_teardown),
    };
    return cmocka_run_group_tests(tests, srv_start, srv_stop);
}
