/* The whole webhook request path: raw bytes over a real loopback socket
 * into the webhook server, through libevent's HTTP parser, the connection
 * watch, the framing and media checks, the form decoder and the signature
 * check, to the answer. An input whose headers hold the line
 * "X-Twilio-Signature: @" is signed here first (over its request target and
 * its body as the server will read them), so the fuzzer gets past the
 * signature into what follows it, the handlers included. Redis is never up:
 * a signed webhook ends at its handler's 503, as it would while Redis is
 * away. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "app.h"
#include "core/config.h"
#include "core/log.h"
#include "loop/loop.h"
#include "redis/policy.h"
#include "redis/redis.h"
#include "twilio/form.h"
#include "webhook/connections.h"
#include "webhook/server.h"
#include "signed_pairs.h"
#include "webhook/signature.h"

#define TOKEN "fuzz-auth-token"
#define PUBLIC_URL "https://hooks.example.com"
#define PLACEHOLDER "\r\nX-Twilio-Signature: @\r\n"

static struct app app;
static struct config cfg;
static struct config_redis redis_server;
static struct event_base *base;
static int port;
static int verbose; /* FUZZ_WEBHOOK_VERBOSE: print each answer's status line */

static int free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) ||
        getsockname(fd, (struct sockaddr *)&sin, &sl))
        abort();
    close(fd);
    return ntohs(sin.sin_port);
}

static void start(void)
{
    char err[256] = "policy_init failed";
    struct redis_opts ropts = {.server = &redis_server, .ping_interval_ms = 1000,
                               .timeout_ms = 1000};

    verbose = getenv("FUZZ_WEBHOOK_VERBOSE") != NULL;
    log_set_level(verbose ? LOG_LEVEL_INFO : LOG_LEVEL_ERROR); /* a refusal per input */
    port = free_port();
    snprintf(cfg.http_addr, sizeof(cfg.http_addr), "127.0.0.1:%d", port);
    snprintf(cfg.public_url, sizeof(cfg.public_url), "%s", PUBLIC_URL);
    snprintf(cfg.auth_token, sizeof(cfg.auth_token), "%s", TOKEN);
    cfg.http_max_connections = 64;
    cfg.http_request_timeout_s = 30;
    app.cfg = &cfg;
    app.nworkers = 1;
    if (loop_new(&app.workers[0].loop))
        abort();
    base = loop_base(app.workers[0].loop);
    loop_own_base(base);
    /* As the daemon does first; then a Redis made and never started: it
     * stays down. */
    if (policy_init() ||
        redis_new(base, &ropts, &app.workers[0].redis) ||
        webhook_new(&app, err, sizeof(err), &app.webhook)) {
        fprintf(stderr, "fuzz_webhook: %s\n", err);
        abort();
    }
}


static void pump(void)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
}

static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* Each exchange leaves a TIME_WAIT, which the kernel's connection tracking
 * (when it is on) keeps for two minutes: thousands a second for a minute
 * would fill its table, and then every new connection on the machine is
 * dropped, not only ours. So past half the table, the next 1000 wait up to
 * 5 s (within libFuzzer's -timeout for one input): 200 a second at most,
 * well under what the table drains. */
static void leave_conntrack_room(void)
{
    static unsigned calls;
    if (calls++ % 1000)
        return;
    long max = read_long("/proc/sys/net/netfilter/nf_conntrack_max");
    for (int i = 0; i < 50 && max > 0 &&
                    read_long("/proc/sys/net/netfilter/nf_conntrack_count") > max / 2;
         i++) {
        pump();
        usleep(100000);
    }
}

/* Sends the request, closes our side, and reads until the server closes
 * (every path ends there: an answer and close, a refusal, or EOF seen). */
static void exchange(const char *req, size_t len)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* Our end closes first (to end what the input left unfinished), so
     * each exchange leaves a TIME_WAIT: thousands a second would use up one
     * address's ports. Spread over 127.0.0.2-251, all of them loopback. */
    static unsigned exchanges;
    leave_conntrack_room();
    struct sockaddr_in from = {.sin_family = AF_INET,
                               .sin_addr.s_addr = htonl(0x7f000002u + exchanges++ % 250)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&from, sizeof(from)) ||
        (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) && errno != EINPROGRESS)) {
        perror("fuzz_webhook: connect");
        abort();
    }
    /* The server accepts only while we pump its loop. */
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int waited = 0;
    while (poll(&pfd, 1, 0) == 0 && waited < 10000) {
        pump();
        if (++waited % 100 == 0)
            usleep(1000);
    }
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (!pfd.revents || soerr) {
        /* Thousands of exchanges a second for minutes can fill the
         * kernel's connection tracking table, which then drops every SYN. */
        fprintf(stderr, "fuzz_webhook: connect: %s after %d rounds%s\n",
                soerr ? strerror(soerr) : "no answer", waited,
                soerr ? "" : " (a full /proc/sys/net/netfilter/nf_conntrack_count?)");
        abort();
    }
    size_t sent = 0;
    char buf[4096];
    int closed = 0, first = 1;
    for (int i = 0; i < 100000 && !closed; i++) {
        if (sent < len) {
            ssize_t n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN)
                sent = len; /* the server closed on us */
            if (sent == len)
                shutdown(fd, SHUT_WR);
        }
        pump();
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n > 0 && verbose && first) {
            buf[n] = '\0';
            fprintf(stderr, "answer: %.*s\n", (int)strcspn(buf, "\r\n"), buf);
        }
        if (n > 0)
            first = 0;
        if (n == 0 || (n < 0 && errno != EAGAIN))
            closed = 1;
    }
    close(fd);
    /* Every exchange ends with its connection gone: one left open is a
     * leak the fuzzer found (a descriptor, a filter, memory). */
    struct conns_stats st;
    int rounds = 0;
    do {
        pump();
        webhook_connections(app.webhook, &st);
    } while (st.open && ++rounds < 10000);
    if (st.open) {
        fprintf(stderr, "fuzz_webhook: %d connections still open after the exchange\n", st.open);
        abort();
    }
}

/* The request with the placeholder's "@" replaced by its signature (empty
 * when the request is too malformed to sign), or NULL when it has none.
 * The caller frees it. */
static char *signed_copy(const char *req, size_t len, size_t *outlen)
{
    const char *at = memmem(req, len, PLACEHOLDER, strlen(PLACEHOLDER));
    const char *end = memmem(req, len, "\r\n\r\n", 4);
    const char *sp1 = memchr(req, ' ', len);
    if (!at)
        return NULL;
    size_t head = (size_t)(at - req) + strlen(PLACEHOLDER) - 3; /* up to the "@" */
    char sig[SIGNATURE_LEN + 1] = "";
    const char *target = sp1 ? sp1 + 1 : NULL;
    const char *sp2 = target && end && target < end
                          ? memchr(target, ' ', (size_t)(end - target)) : NULL;
    char url[2048];
    if (sp2 && at < end &&
        (size_t)snprintf(url, sizeof(url), "%s%.*s", PUBLIC_URL, (int)(sp2 - target), target) <
            sizeof(url)) {
        const char *body = end + 4;
        size_t blen = len - (size_t)(body - req);
        char *scratch = malloc(blen + 1), *copies = malloc(blen + 1);
        struct signed_pairs *c = calloc(1, sizeof(*c));
        if (scratch && copies && c) {
            c->next = copies;
            if (form_decode(body, blen, signed_pairs_add, c, scratch, blen + 1) == 0)
                signature_compute(TOKEN, url, c->p, c->n, 1, sig);
        }
        free(scratch);
        free(copies);
        free(c);
    }
    size_t siglen = strlen(sig);
    char *out = malloc(len - 1 + siglen);
    if (!out)
        return NULL;
    memcpy(out, req, head);
    memcpy(out + head, sig, siglen);
    memcpy(out + head + siglen, req + head + 1, len - head - 1);
    *outlen = len - 1 + siglen;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len;
    if (!base)
        start();
    char *req = signed_copy((const char *)data, size, &len);
    if (req)
        exchange(req, len);
    else
        exchange((const char *)data, size);
    free(req);
    return 0;
}
