/* twilio-sim: a small, fast stand-in for the parts of Twilio's REST API
 * commsgate uses (Messages, Calls, Verify v2), for tests and `make run`.
 * It honours Twilio's test-credential magic numbers, injects faults on
 * demand, and records every request so tests can count sends.
 *
 *   twilio-sim --listen HOST:PORT [--latency-ms N] [--no-callbacks] [--no-record]
 *              [--tls-cert PEM --tls-key PEM]
 *
 * With --tls-cert and --tls-key it serves HTTPS only (libevent's OpenSSL
 * bufferevents), as Twilio does; its webhooks stay plain HTTP.
 *
 * Test-only endpoints (no auth):
 *   GET  /__sim/requests[?path_suffix=S]  every API request received
 *   POST /__sim/reset                      forget requests, verifications, faults
 *   GET  /__sim/verifications              codes "sent", for tests to type in
 *   POST /__sim/faults                     queue a fault (JSON, see README)
 *   POST /__sim/faults/clear               forget the queued faults, keep the rest
 *   POST /__sim/config                     {"max_open": N}: like Twilio, refuse with
 *                                          429 / 20429 (not acted on) a request that
 *                                          arrives while N are open; 0: no limit.
 *                                          {"list_lag_ms": N}: the lists show a
 *                                          message or call only N ms after it was made.
 *                                          {"callbacks": false}: send no status callbacks.
 *                                          {"keepalive": false}: close every connection
 *                                          after its answer
 * API: POST Messages.json, Calls.json, Verifications, VerificationCheck;
 *      GET Messages.json and Calls.json (lists: To, From, PageSize, Page,
 *      PageToken; newest first), GET /v2/Attempts (Verify's: VerifyServiceSid,
 *      ChannelData.To, Channel, DateCreatedAfter, PageSize, PageToken).
 *   GET  /__sim/health
 *   POST /__sim/inbound                    post a signed inbound message (JSON: url,
 *                                          from, to, body, num_media, token)
 * A request may also carry `X-Sim-Fault: latency_ms=N | status=429,code=20429 | drop`.
 * A fault's `after` ("close" or "reset") acts on the request, then cuts the
 * connection instead of answering: what a network does at the worst moment.
 *
 * Like a real account (and unlike Twilio's test credentials), an accepted
 * message with a StatusCallback gets signed callbacks: (queued, after
 * accepted,) sent, then delivered;
 * To +15005550020 ends undelivered (30003), +15005550021 failed (30006).
 * A call with a StatusCallback gets the StatusCallbackEvent events it asked
 * for, as if answered. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_RECORDED 100000
#define MAX_VERIFICATIONS 10000
#define MAX_FAULTS 1000
#define MAX_RESOURCES 20000 /* messages, and calls, kept for the list endpoints */
#define MAX_PAGE_SIZE 1000
#define VERIFY_TTL_S 600
#define VERIFY_MAX_SENDS 5
#define VERIFY_MAX_CHECKS 5

/* Documented test values (README, "The Twilio simulator"). */
#define DEFAULT_ACCOUNT_SID "AC00000000000000000000000000000000"
#define DEFAULT_AUTH_TOKEN "simulator-auth-token"

struct fault {
    char path_suffix[64];
    char to[64];
    int times; /* 0: forever */
    int latency_ms;
    int status, code;
    int drop;
    int cut; /* after acting: CUT_CLOSE or CUT_RESET instead of the answer */
    int get;  /* applies to GETs (the lists) instead of POSTs */
    char message[256]; /* the error's text; "" for the default */
};

/* How a connection ends without its answer. */
enum { CUT_NONE, CUT_CLOSE, CUT_RESET };

struct verification {
    char sid[35];
    char to[256];
    char channel[16];
    char code[7];
    char status[24]; /* pending, approved, canceled, max_attempts_reached */
    int checks;
    double sends[VERIFY_MAX_SENDS + 1];
    int nsends;
    double created;
};

/* A message or call this simulator created, newest last, for the lists. */
struct resource {
    json_t *json;
    double created; /* now_s() */
};

struct store {
    struct resource all[MAX_RESOURCES]; /* ring */
    size_t head, count;
};

static struct {
    struct event_base *base;
    const char *account_sid, *auth_token, *key_sid, *key_secret;
    int latency_ms;
    int no_callbacks; /* --no-callbacks: benchmarks measure RPCs, not webhooks */
    int cli_no_callbacks; /* as given on the command line: reset goes back to it */
    int no_record;    /* --no-record: benchmarks keep no request log (GET /__sim/requests is empty) */
    json_t *recorded[MAX_RECORDED]; /* ring */
    size_t rec_head, rec_count;
    struct verification *verifs;
    size_t nverifs;
    struct fault faults[MAX_FAULTS];
    size_t nfaults;
    int open, max_open; /* API requests not answered yet, and the cap (0: none) */
    int list_lag_ms;    /* a resource shows in the lists only this long after it was made */
    int close_connections; /* config keepalive false: "Connection: close" on every answer */
    struct store messages, calls, attempts;
} sim;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void random_sid(char *out, const char *prefix)
{
    unsigned char r[16];
    RAND_bytes(r, sizeof(r));
    out[0] = prefix[0];
    out[1] = prefix[1];
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 + 2 * i, 3, "%02x", r[i]);
}

static void rfc2822(char *out, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

static int is_e164(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 3 || n > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static const char *strip_whatsapp(const char *s)
{
    return s && strncmp(s, "whatsapp:", 9) == 0 ? s + 9 : s;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/* --- answering --- */

struct deferred {
    struct evhttp_request *req;
    int status;
    char *body;
    struct event *ev;
    int cut;
};

static void send_now(struct evhttp_request *req, int status, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (sim.close_connections) /* every request on a new connection */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    if (status == 429)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Twilio-Concurrent-Requests", "101");
    evbuffer_add(b, body, strlen(body));
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    evhttp_send_reply(req, status, status < 300 ? "OK" : "Error", b);
    /* One piece, so that over TLS it leaves as one record, as a real HTTPS
     * server's small answer does (libevent writes a record per piece, and
     * the client would read each apart). Written later, by the loop. */
    if (bev)
        evbuffer_pullup(bufferevent_get_output(bev), -1);
    evbuffer_free(b);
}

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
    struct deferred *d = arg;
    sim.open--;
    if (d->cut) {
        struct evhttp_connection *conn = evhttp_request_get_connection(d->req);
        if (d->cut == CUT_RESET) {
            /* SO_LINGER 0: close sends a TCP reset, not a FIN. */
            struct linger lg = {1, 0};
            evutil_socket_t sock = bufferevent_getfd(evhttp_connection_get_bufferevent(conn));
            setsockopt(sock, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        evhttp_connection_free(conn);
    } else
        send_now(d->req, d->status, d->body);
    event_free(d->ev);
    free(d->body);
    free(d);
}

/* Answers after `latency_ms` (0: at once), or cuts the connection (`cut`).
 * Never blocks the loop. Takes `body`. */
static void answer(struct evhttp_request *req, int status, char *body, int latency_ms, int cut)
{
    if (latency_ms <= 0 && !cut) {
        send_now(req, status, body);
        free(body);
        return;
    }
    struct deferred *d = calloc(1, sizeof(*d));
    sim.open++;
    d->req = req;
    d->status = status;
    d->body = body;
    d->cut = cut;
    d->ev = evtimer_new(sim.base, on_deferred, d);
    struct timeval tv = {latency_ms / 1000, (latency_ms % 1000) * 1000};
    evtimer_add(d->ev, &tv);
}

static char *twilio_error(int status, int code, const char *message)
{
    char more[80];
    snprintf(more, sizeof(more), "https://www.twilio.com/docs/errors/%d", code);
    json_t *j = json_pack("{s:i, s:s, s:s, s:i}", "code", code, "message", message, "more_info",
                          more, "status", status);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

/* --- requests --- */

struct api_req {
    struct evhttp_request *req;
    const char *path;
    struct evkeyvalq params;
    json_t *record;
    int status; /* what we answered, recorded */
    int cut;    /* the fault's: acted on, then the connection cut */
};

static const char *param(struct api_req *a, const char *name)
{
    return evhttp_find_header(&a->params, name);
}

static int check_auth(struct evhttp_request *req, char *user, size_t ulen)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    unsigned char dec[512];
    user[0] = '\0';
    if (!h || strncmp(h, "Basic ", 6) != 0 || strlen(h + 6) > 600)
        return 0;
    int n = EVP_DecodeBlock(dec, (const unsigned char *)h + 6, (int)strlen(h + 6));
    if (n <= 0)
        return 0;
    while (n > 0 && dec[n - 1] == '\0')
        n--; /* EVP_DecodeBlock counts base64 padding as NUL bytes */
    dec[n] = '\0';
    char *colon = strchr((char *)dec, ':');
    if (!colon)
        return 0;
    *colon = '\0';
    snprintf(user, ulen, "%.*s", (int)ulen - 1, (char *)dec); /* recorded only */
    const char *pass = colon + 1;
    if (strcmp((char *)dec, sim.account_sid) == 0 && strcmp(pass, sim.auth_token) == 0)
        return 1;
    if (sim.key_sid && sim.key_secret && strcmp((char *)dec, sim.key_sid) == 0 &&
        strcmp(pass, sim.key_secret) == 0)
        return 1;
    return 0;
}

static void record(json_t *r)
{
    size_t slot = (sim.rec_head + sim.rec_count) % MAX_RECORDED;
    if (sim.rec_count == MAX_RECORDED) {
        json_decref(sim.recorded[sim.rec_head]);
        sim.rec_head = (sim.rec_head + 1) % MAX_RECORDED;
        slot = (sim.rec_head + sim.rec_count - 1) % MAX_RECORDED;
    } else {
        sim.rec_count++;
    }
    sim.recorded[slot] = r;
}

static void store_add(struct store *st, json_t *j)
{
    if (sim.no_record)
        return; /* benchmarks: nothing lists what they sent */
    struct resource *r;
    if (st->count == MAX_RESOURCES) {
        r = &st->all[st->head];
        json_decref(r->json);
        st->head = (st->head + 1) % MAX_RESOURCES;
    } else {
        r = &st->all[(st->head + st->count++) % MAX_RESOURCES];
    }
    r->json = json_incref(j);
    r->created = now_s();
}

static void store_clear(struct store *st)
{
    for (size_t i = 0; i < st->count; i++)
        json_decref(st->all[(st->head + i) % MAX_RESOURCES].json);
    st->head = st->count = 0;
}

/* One page of st, newest first: the entries `keep` takes, past the first
 * `skip` of them, at most `size`; *more says whether another page follows. */
static json_t *page_of(const struct store *st, int (*keep)(const json_t *j, void *arg),
                       void *arg, double newest, long skip, long size, int *more)
{
    json_t *items = json_array();
    long matched = 0;
    *more = 0;
    for (size_t i = st->count; i-- > 0;) {
        const struct resource *r = &st->all[(st->head + i) % MAX_RESOURCES];
        if (r->created > newest || !keep(r->json, arg) || matched++ < skip)
            continue;
        if ((long)json_array_size(items) == size) {
            *more = 1;
            break;
        }
        json_array_append(items, r->json);
    }
    return items;
}

/* The first queued fault matching this request, consumed; or the header's. */
static int take_fault(struct api_req *a, struct fault *out)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(a->req), "X-Sim-Fault");
    memset(out, 0, sizeof(*out));
    if (h) {
        if (strstr(h, "drop"))
            out->drop = 1;
        const char *p;
        if ((p = strstr(h, "latency_ms=")))
            out->latency_ms = atoi(p + 11);
        if ((p = strstr(h, "status=")))
            out->status = atoi(p + 7);
        if ((p = strstr(h, "code=")))
            out->code = atoi(p + 5);
        return 1;
    }
    const char *to = param(a, "To");
    size_t plen = strlen(a->path);
    int is_get = evhttp_request_get_command(a->req) == EVHTTP_REQ_GET;
    for (size_t i = 0; i < sim.nfaults; i++) {
        struct fault *f = &sim.faults[i];
        if (f->get != is_get)
            continue;
        size_t sl = strlen(f->path_suffix);
        if (sl && (sl > plen || strcmp(a->path + plen - sl, f->path_suffix) != 0))
            continue;
        if (f->to[0] && (!to || strcmp(strip_whatsapp(to), f->to) != 0))
            continue;
        *out = *f;
        if (f->times > 0 && --f->times == 0) {
            memmove(f, f + 1, (sim.nfaults - i - 1) * sizeof(*f));
            sim.nfaults--;
        }
        return 1;
    }
    return 0;
}

static int fail_api(struct api_req *a, int status, int code, const char *message, int latency)
{
    a->status = status;
    answer(a->req, status, twilio_error(status, code, message), latency, 0);
    return 0;
}


/* --- outgoing signed webhooks --- */

struct outgoing {
    struct outgoing *prev, *next; /* all in flight, freed at exit */
    struct evhttp_connection *conn;
    struct event *timer;
    char url[1024];
    struct evkeyvalq params;
    char token[128];
};

static int cmp_kv(const void *a, const void *b)
{
    const struct evkeyval *x = *(struct evkeyval *const *)a, *y = *(struct evkeyval *const *)b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->value, y->value);
}

/* X-Twilio-Signature as Twilio computes it: URL + sorted name/value pairs. */
static void sign(const char *url, struct evkeyvalq *params, char out[64])
{
    struct evkeyval *sorted[256];
    size_t n = 0, len = strlen(url);
    for (struct evkeyval *kv = params->tqh_first; kv && n < 256; kv = kv->next.tqe_next) {
        sorted[n++] = kv;
        len += strlen(kv->key) + strlen(kv->value);
    }
    qsort(sorted, n, sizeof(*sorted), cmp_kv);
    char *data = malloc(len + 1);
    strcpy(data, url);
    for (size_t i = 0; i < n; i++) {
        strcat(data, sorted[i]->key);
        strcat(data, sorted[i]->value);
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    HMAC(EVP_sha1(), sim.auth_token, (int)strlen(sim.auth_token), (unsigned char *)data,
         strlen(data), mac, &maclen);
    EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
    free(data);
}

static struct outgoing *outgoing_all;

static void outgoing_free(struct outgoing *o)
{
    if (o->prev)
        o->prev->next = o->next;
    else
        outgoing_all = o->next;
    if (o->next)
        o->next->prev = o->prev;
    if (o->conn)
        evhttp_connection_free(o->conn);
    evhttp_clear_headers(&o->params);
    if (o->timer)
        event_free(o->timer);
    free(o);
}

static void on_outgoing_done(struct evhttp_request *req, void *arg)
{
    struct outgoing *o = arg;
    if (!req || evhttp_request_get_response_code(req) >= 300)
        fprintf(stderr, "twilio-sim: webhook %s answered %d\n", o->url,
                req ? evhttp_request_get_response_code(req) : 0);
    o->conn = NULL; /* libevent frees it once this returns (free_on_completion) */
    outgoing_free(o);
}

static void on_outgoing_timer(evutil_socket_t fd, short what, void *arg)
{
    struct outgoing *o = arg;
    struct evhttp_uri *uri = evhttp_uri_parse(o->url);
    char sig[64], *body;
    struct evbuffer *b = evbuffer_new();

    if (!uri || !evhttp_uri_get_host(uri)) {
        fprintf(stderr, "twilio-sim: bad callback URL %s\n", o->url);
        goto fail;
    }
    int port = evhttp_uri_get_port(uri);
    o->conn = evhttp_connection_base_new(sim.base, NULL, evhttp_uri_get_host(uri),
                                         (ev_uint16_t)(port > 0 ? port : 80));
    struct evhttp_request *req = evhttp_request_new(on_outgoing_done, o);
    for (struct evkeyval *kv = o->params.tqh_first; kv; kv = kv->next.tqe_next) {
        char *k = evhttp_encode_uri(kv->key), *v = evhttp_encode_uri(kv->value);
        evbuffer_add_printf(b, "%s%s=%s", kv == o->params.tqh_first ? "" : "&", k, v);
        free(k);
        free(v);
    }
    sign(o->url, &o->params, sig);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", evhttp_uri_get_host(uri));
    evhttp_add_header(h, "Content-Type", "application/x-www-form-urlencoded");
    evhttp_add_header(h, "X-Twilio-Signature", sig);
    evhttp_add_header(h, "Connection", "close");
    if (o->token[0])
        evhttp_add_header(h, "I-Twilio-Idempotency-Token", o->token);
    evbuffer_add_buffer(evhttp_request_get_output_buffer(req), b);
    const char *path = evhttp_uri_get_path(uri), *query = evhttp_uri_get_query(uri);
    size_t need = strlen(path && *path ? path : "/") + (query ? strlen(query) + 1 : 0) + 1;
    body = malloc(need);
    snprintf(body, need, "%s%s%s", path && *path ? path : "/", query ? "?" : "", query ? query : "");
    /* One connection per callback, closed once answered. libevent frees a
     * connection on completion only when it closes (Connection: close), and
     * decides so before calling back: asked from on_outgoing_done, it left
     * every callback's connection open until commsgate cut it idle, 10 s
     * later (a few hundred sends a second filled commsgate's 1024). Asked
     * before the request: a connect that fails at once calls
     * on_outgoing_done, which frees o, from inside evhttp_make_request. */
    evhttp_connection_free_on_completion(o->conn);
    evhttp_make_request(o->conn, req, EVHTTP_REQ_POST, body); /* o may be gone now */
    free(body);
    evbuffer_free(b);
    evhttp_uri_free(uri);
    return;
fail:
    evbuffer_free(b);
    if (uri)
        evhttp_uri_free(uri);
    outgoing_free(o);
}

/* Posts params, signed, to url after delay_ms. Takes nothing; copies all. */
static void post_webhook(const char *url, const char *const *kv, size_t n, int delay_ms,
                         const char *token)
{
    struct outgoing *o = calloc(1, sizeof(*o));
    snprintf(o->url, sizeof(o->url), "%s", url);
    snprintf(o->token, sizeof(o->token), "%s", token ? token : "");
    TAILQ_INIT(&o->params);
    for (size_t i = 0; i + 1 < n; i += 2)
        if (kv[i + 1])
            evhttp_add_header(&o->params, kv[i], kv[i + 1]);
    o->next = outgoing_all;
    if (outgoing_all)
        outgoing_all->prev = o;
    outgoing_all = o;
    o->timer = evtimer_new(sim.base, on_outgoing_timer, o);
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(o->timer, &tv);
}

/* No callback for the status the API answered with (queued, or accepted
 * for a messaging service, which then reports queued). */
static void status_callbacks(const char *url, const char *sid, const char *to, const char *from,
                             int accepted)
{
    const char *final = "delivered", *code = NULL;
    if (strcmp(strip_whatsapp(to), "+15005550020") == 0)
        final = "undelivered", code = "30003";
    else if (strcmp(strip_whatsapp(to), "+15005550021") == 0)
        final = "failed", code = "30006";
    const char *statuses[] = {"queued", "sent", final};
    for (int i = accepted ? 0 : 1; i < 3; i++) {
        const char *kv[] = {"MessageSid", sid, "SmsSid", sid, "MessageStatus", statuses[i],
                            "SmsStatus", statuses[i], "AccountSid", sim.account_sid,
                            "From", from ? from : "", "To", to, "ApiVersion", "2010-04-01",
                            "ErrorCode", i == 2 ? code : NULL};
        post_webhook(url, kv, sizeof(kv) / sizeof(kv[0]), 10 * i, NULL);
    }
}

/* Messages.json */
static int api_messages(struct api_req *a, int latency)
{
    const char *to = param(a, "To"), *from = param(a, "From");
    const char *mss = param(a, "MessagingServiceSid"), *body = param(a, "Body");
    const char *content = param(a, "ContentSid");
    int media = 0;
    char sid[35], date[64], uri[200];

    for (struct evkeyval *kv = a->params.tqh_first; kv; kv = kv->next.tqe_next)
        if (strcmp(kv->key, "MediaUrl") == 0)
            media++;
    if (!to)
        return fail_api(a, 400, 21604, "A 'To' phone number is required.", latency);
    if (!from && !mss)
        return fail_api(a, 400, 21603, "A 'From' phone number is required.", latency);
    if (!body && !media && !content)
        return fail_api(a, 400, 21619, "A text message body or media url must be specified.",
                        latency);
    const char *bare_to = strip_whatsapp(to), *bare_from = strip_whatsapp(from);
    static const struct { const char *num; int code; const char *msg; } magic_from[] = {
        {"+15005550001", 21212, "The 'From' number is not a valid phone number."},
        {"+15005550007", 21606, "The 'From' phone number provided is not a valid message-capable Twilio phone number for this destination/account."},
        {"+15005550008", 21611, "This 'From' number has exceeded the maximum number of queued messages."},
    }, magic_to[] = {
        {"+15005550001", 21211, "The 'To' number is not a valid phone number."},
        {"+15005550002", 21612, "The 'To' phone number is not currently reachable via SMS."},
        {"+15005550003", 21408, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number."},
        {"+15005550004", 21610, "Attempt to send to unsubscribed recipient"},
        {"+15005550009", 21614, "'To' number is not a valid mobile number"},
    };
    for (size_t i = 0; from && i < sizeof(magic_from) / sizeof(magic_from[0]); i++)
        if (strcmp(bare_from, magic_from[i].num) == 0)
            return fail_api(a, 400, magic_from[i].code, magic_from[i].msg, latency);
    if (!is_e164(bare_to))
        return fail_api(a, 400, 21211, "The 'To' number is not a valid phone number.", latency);
    for (size_t i = 0; i < sizeof(magic_to) / sizeof(magic_to[0]); i++)
        if (strcmp(bare_to, magic_to[i].num) == 0)
            return fail_api(a, 400, magic_to[i].code, magic_to[i].msg, latency);
    size_t chars = body ? utf8_chars(body) : 0;
    if (chars > 1600)
        return fail_api(a, 400, 21617, "The concatenated message body exceeds the 1600 character limit.", latency);

    random_sid(sid, media ? "MM" : "SM");
    rfc2822(date, sizeof(date));
    snprintf(uri, sizeof(uri), "/2010-04-01/Accounts/%s/Messages/%s.json", sim.account_sid, sid);
    char segs[16], nmedia[16];
    snprintf(segs, sizeof(segs), "%zu", chars <= 160 ? (size_t)1 : (chars + 152) / 153);
    snprintf(nmedia, sizeof(nmedia), "%d", media);
    json_t *j = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:n, s:n, s:n, s:n, s:s}",
                          "sid", sid, "account_sid", sim.account_sid, "to", to,
                          "from", from ? json_string(from) : json_null(),
                          "messaging_service_sid", mss ? json_string(mss) : json_null(),
                          "body", body ? json_string(body) : json_string(""),
                          "status", mss && !from ? "accepted" : "queued", "num_segments", segs,
                          "num_media", nmedia, "direction", "outbound-api", "api_version",
                          "2010-04-01", "date_created", date, "date_updated", date,
                          "date_sent", "error_code", "error_message", "price", "uri", uri);
    store_add(&sim.messages, j);
    const char *callback = param(a, "StatusCallback");
    if (callback && !sim.no_callbacks)
        status_callbacks(callback, sid, to, from, mss && !from);
    a->status = 201;
    answer(a->req, 201, dump(j), latency, a->cut);
    return 0;
}

/* Like Twilio: a call's StatusCallback gets the events it asked for
 * (StatusCallbackEvent; completed alone when none), as if answered. */
static void call_callbacks(struct api_req *a, const char *url, const char *sid, const char *to,
                           const char *from)
{
    static const char *const events[][2] = {{"initiated", "initiated"}, {"ringing", "ringing"},
                                            {"answered", "in-progress"},
                                            {"completed", "completed"}};
    int asked[4] = {0}, any = 0;
    for (struct evkeyval *kv = a->params.tqh_first; kv; kv = kv->next.tqe_next)
        for (int i = 0; i < 4; i++)
            if (strcmp(kv->key, "StatusCallbackEvent") == 0 && strcmp(kv->value, events[i][0]) == 0)
                asked[i] = any = 1;
    if (!any)
        asked[3] = 1;
    for (int i = 0; i < 4; i++) {
        if (!asked[i])
            continue;
        const char *kv[] = {"CallSid", sid, "CallStatus", events[i][1], "AccountSid",
                            sim.account_sid, "From", from, "To", to, "ApiVersion", "2010-04-01",
                            "CallDuration", i == 3 ? "1" : NULL};
        post_webhook(url, kv, sizeof(kv) / sizeof(kv[0]), 10 * i, NULL);
    }
}

/* Calls.json */
static int api_calls(struct api_req *a, int latency)
{
    const char *to = param(a, "To"), *from = param(a, "From");
    char sid[35], date[64], uri[200];
    if (!to)
        return fail_api(a, 400, 21201, "No 'To' number is specified", latency);
    if (!from)
        return fail_api(a, 400, 21213, "No 'From' number is specified", latency);
    if (!param(a, "Url") && !param(a, "Twiml") && !param(a, "ApplicationSid"))
        return fail_api(a, 400, 21205, "Url parameter is required.", latency);
    if (strcmp(to, "+15005550001") == 0 || !is_e164(to))
        return fail_api(a, 400, 21217, "Phone number does not appear to be valid", latency);
    if (strcmp(to, "+15005550003") == 0)
        return fail_api(a, 400, 21215, "Account not authorized to call this number", latency);
    if (strcmp(to, "+15005550004") == 0)
        return fail_api(a, 400, 21216, "Call blocked by Twilio blocklist", latency);
    random_sid(sid, "CA");
    rfc2822(date, sizeof(date));
    snprintf(uri, sizeof(uri), "/2010-04-01/Accounts/%s/Calls/%s.json", sim.account_sid, sid);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "sid", sid,
                          "account_sid", sim.account_sid, "to", to, "from", from, "status",
                          "queued", "direction", "outbound-api", "date_created", date,
                          "api_version", "2010-04-01", "uri", uri);
    store_add(&sim.calls, j);
    const char *callback = param(a, "StatusCallback");
    if (callback && !sim.no_callbacks)
        call_callbacks(a, callback, sid, to, from);
    a->status = 201;
    answer(a->req, 201, dump(j), latency, a->cut);
    return 0;
}

static struct verification *find_pending(const char *to, const char *sid)
{
    double now = now_s();
    for (size_t i = 0; i < sim.nverifs; i++) {
        struct verification *v = &sim.verifs[i];
        if (now - v->created > VERIFY_TTL_S && strcmp(v->status, "pending") == 0)
            strcpy(v->status, "expired");
        if (strcmp(v->status, "pending") != 0)
            continue;
        if ((to && strcmp(v->to, to) == 0) || (sid && strcmp(v->sid, sid) == 0))
            return v;
    }
    return NULL;
}

static json_t *verification_json(const struct verification *v, const char *service)
{
    char date[64];
    rfc2822(date, sizeof(date));
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:n, s:n, s:s, s:s}", "sid", v->sid,
                     "service_sid", service, "account_sid", sim.account_sid, "to", v->to,
                     "channel", v->channel, "status", v->status, "valid",
                     strcmp(v->status, "approved") == 0, "amount", "payee", "date_created", date,
                     "date_updated", date);
}

/* An ISO 8601 UTC date ("2026-12-01T22:53:14Z") as unix seconds; -1 if not one. */
static double match_date_s(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    return end && !*end ? (double)timegm(&tm) : -1;
}

static void iso8601(double t, char *out, size_t len)
{
    time_t secs = (time_t)t;
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Like Verify: every code sent is an attempt, listed by GET /v2/Attempts. */
static void add_attempt(const struct verification *v, const char *service)
{
    char sid[35], date[32], url[80];
    random_sid(sid, "VL");
    iso8601(now_s(), date, sizeof(date));
    snprintf(url, sizeof(url), "https://verify.twilio.com/v2/Attempts/%s", sid);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:n, s:{s:s}, s:s}", "sid",
                          sid, "account_sid", sim.account_sid, "service_sid", service,
                          "verification_sid", v->sid, "date_created", date, "date_updated", date,
                          "conversion_status", "unconverted", "channel", v->channel, "price",
                          "channel_data", "to", v->to, "url", url);
    store_add(&sim.attempts, j);
    json_decref(j);
}

/* A verification approved: its attempts are converted. */
static void convert_attempts(const struct verification *v)
{
    for (size_t i = 0; i < sim.attempts.count; i++) {
        json_t *j = sim.attempts.all[(sim.attempts.head + i) % MAX_RESOURCES].json;
        if (strcmp(json_string_value(json_object_get(j, "verification_sid")), v->sid) == 0)
            json_object_set_new(j, "conversion_status", json_string("converted"));
    }
}

struct attempt_filter {
    const char *service, *to, *channel;
    double after; /* unix s */
};

static int keep_attempt(const json_t *j, void *arg)
{
    const struct attempt_filter *f = arg;
    const char *to = json_string_value(json_object_get(json_object_get(j, "channel_data"), "to"));
    return (!f->service ||
            strcmp(json_string_value(json_object_get(j, "service_sid")), f->service) == 0) &&
           (!f->channel || strcmp(json_string_value(json_object_get(j, "channel")), f->channel) == 0) &&
           (!f->to || strcmp(to, f->to) == 0) &&
           match_date_s(json_string_value(json_object_get(j, "date_created"))) >= f->after;
}

/* GET /v2/Attempts: newest first, filtered by VerifyServiceSid,
 * ChannelData.To, Channel and DateCreatedAfter (ISO 8601), paged like
 * Verify with full URLs in meta. */
static int api_attempts(struct api_req *a, int latency)
{
    const char *service = param(a, "VerifyServiceSid"), *to = param(a, "ChannelData.To");
    const char *channel = param(a, "Channel"), *after_s = param(a, "DateCreatedAfter");
    const char *size_s = param(a, "PageSize"), *token = param(a, "PageToken");
    const char *host = evhttp_find_header(evhttp_request_get_input_headers(a->req), "Host");
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(a->req));
    long size = size_s ? atol(size_s) : 50;
    long skip = token && strncmp(token, "PA", 2) == 0 ? atol(token + 2) : 0;
    double after = 0;
    char url[2048], base[300];

    if (size < 1 || size > MAX_PAGE_SIZE || skip < 0)
        return fail_api(a, 400, 20001, "Invalid paging parameter", latency);
    if (after_s && (after = match_date_s(after_s)) < 0)
        return fail_api(a, 400, 20001, "Invalid DateCreatedAfter", latency);
    snprintf(base, sizeof(base), "http://%s/v2/Attempts", host ? host : "127.0.0.1");
    struct attempt_filter filter = {service, to, channel, after};
    int more;
    json_t *items = page_of(&sim.attempts, keep_attempt, &filter, now_s(), skip, size, &more);
    /* The next page's URL: this query with the PageToken moved on. */
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (query)
        evhttp_parse_query_str(query, &q);
    evhttp_remove_header(&q, "PageToken");
    size_t at = (size_t)snprintf(url, sizeof(url), "%s?", base);
    for (struct evkeyval *kv = q.tqh_first; kv && at < sizeof(url); kv = kv->next.tqe_next) {
        char *k = evhttp_encode_uri(kv->key), *v = evhttp_encode_uri(kv->value);
        at += (size_t)snprintf(url + at, sizeof(url) - at, "%s=%s&", k, v);
        free(k);
        free(v);
    }
    evhttp_clear_headers(&q);
    if (at < sizeof(url))
        snprintf(url + at, sizeof(url) - at, "PageToken=PA%ld", skip + size);
    json_t *j = json_pack("{s:o, s:{s:s, s:s, s:o, s:i, s:i, s:n, s:s}}", "attempts", items,
                          "meta", "first_page_url", base, "key", "attempts", "next_page_url",
                          more ? json_string(url) : json_null(), "page", (json_int_t)(skip / size),
                          "page_size", (json_int_t)size, "previous_page_url", "url", base);
    a->status = 200;
    answer(a->req, 200, dump(j), latency, a->cut);
    return 0;
}

/* POST /v2/Services/{VA}/Verifications */
static int api_verify_start(struct api_req *a, const char *service, int latency)
{
    const char *to = param(a, "To"), *channel = param(a, "Channel");
    static const char *const channels[] = {"sms", "call", "email", "whatsapp", "sna"};
    int known = 0;
    for (size_t i = 0; channel && i < 5; i++)
        known |= strcmp(channel, channels[i]) == 0;
    if (!to || !channel || !known)
        return fail_api(a, 400, 60200, "Invalid parameter", latency);
    if (strcmp(channel, "email") == 0 ? !strchr(to, '@') : !is_e164(to))
        return fail_api(a, 400, 60200, "Invalid parameter `To`", latency);
    double now = now_s();
    struct verification *v = find_pending(to, NULL);
    if (v) {
        int recent = 0;
        for (int i = 0; i < v->nsends; i++)
            recent += now - v->sends[i] < VERIFY_TTL_S;
        if (recent >= VERIFY_MAX_SENDS)
            return fail_api(a, 429, 60203, "Max send attempts reached", latency);
    } else {
        if (sim.nverifs == MAX_VERIFICATIONS)
            return fail_api(a, 429, 60203, "Max send attempts reached", latency);
        v = &sim.verifs[sim.nverifs++];
        memset(v, 0, sizeof(*v));
        random_sid(v->sid, "VE");
        snprintf(v->to, sizeof(v->to), "%s", to);
        unsigned char r[4];
        RAND_bytes(r, sizeof(r));
        snprintf(v->code, sizeof(v->code), "%06u",
                 (((unsigned)r[0] << 24 | (unsigned)r[1] << 16 | (unsigned)r[2] << 8 | r[3]) % 1000000u));
        strcpy(v->status, "pending");
        v->created = now;
    }
    snprintf(v->channel, sizeof(v->channel), "%s", channel);
    v->sends[v->nsends < VERIFY_MAX_SENDS ? v->nsends++ : VERIFY_MAX_SENDS - 1] = now;
    add_attempt(v, service);
    json_t *j = verification_json(v, service);
    json_t *attempts = json_array();
    for (int i = 0; i < v->nsends; i++)
        json_array_append_new(attempts, json_pack("{s:s, s:f}", "channel", v->channel, "time",
                                                  v->sends[i]));
    json_object_set_new(j, "send_code_attempts", attempts);
    json_object_set_new(j, "lookup", json_object());
    a->status = 201;
    answer(a->req, 201, dump(j), latency, a->cut);
    return 0;
}

/* POST /v2/Services/{VA}/VerificationCheck */
static int api_verify_check(struct api_req *a, const char *service, int latency)
{
    const char *to = param(a, "To"), *vsid = param(a, "VerificationSid");
    const char *code = param(a, "Code");
    if (!code || (!to && !vsid))
        return fail_api(a, 400, 60200, "Invalid parameter", latency);
    struct verification *v = find_pending(to, vsid);
    if (!v)
        return fail_api(a, 404, 20404, "The requested resource was not found", latency);
    if (v->checks >= VERIFY_MAX_CHECKS)
        return fail_api(a, 429, 60202, "Max check attempts reached", latency);
    /* Like Twilio: five attempts per verification, the sixth is refused. */
    v->checks++;
    if (strcmp(code, v->code) == 0) {
        strcpy(v->status, "approved");
        convert_attempts(v);
    }
    a->status = 200;
    answer(a->req, 200, dump(verification_json(v, service)), latency, a->cut);
    return 0;
}

struct list_filter {
    const char *to, *from;
};

static int keep_listed(const json_t *j, void *arg)
{
    const struct list_filter *f = arg;
    const char *rf = json_string_value(json_object_get(j, "from"));
    return (!f->to || strcmp(json_string_value(json_object_get(j, "to")), f->to) == 0) &&
           (!f->from || (rf && strcmp(rf, f->from) == 0));
}

/* GET Messages.json or Calls.json: Twilio's list, newest first, filtered
 * by To and From (exact), paged with PageSize, Page and PageToken (here
 * the offset of the page's first entry; Twilio's tokens are opaque). A
 * resource younger than the list lag is not listed yet, as on Twilio,
 * whose lists catch up a little after the resource is made. */
static int api_list(struct api_req *a, const char *account, const char *what,
                    struct store *st, int latency)
{
    const char *to = param(a, "To"), *from = param(a, "From");
    const char *size_s = param(a, "PageSize"), *page_s = param(a, "Page");
    const char *token = param(a, "PageToken");
    long size = size_s ? atol(size_s) : 50, page = page_s ? atol(page_s) : 0;
    long skip = token && strncmp(token, "PA", 2) == 0 ? atol(token + 2) : page * size;
    double newest = now_s() - sim.list_lag_ms / 1000.0;
    char base[300], uri[1200], enc_to[200] = "", enc_from[200] = "";

    if (size < 1 || size > MAX_PAGE_SIZE || page < 0 || skip < 0)
        return fail_api(a, 400, 20001, "Invalid paging parameter", latency);
    if (to) {
        char *e = evhttp_encode_uri(to);
        snprintf(enc_to, sizeof(enc_to), "&To=%s", e);
        free(e);
    }
    if (from) {
        char *e = evhttp_encode_uri(from);
        snprintf(enc_from, sizeof(enc_from), "&From=%s", e);
        free(e);
    }
    snprintf(base, sizeof(base), "/2010-04-01/Accounts/%s/%s.json", account, what);
    struct list_filter filter = {to, from};
    int more;
    json_t *items = page_of(st, keep_listed, &filter, newest, skip, size, &more);
    snprintf(uri, sizeof(uri), "%s?PageSize=%ld%s%s&Page=%ld&PageToken=PA%ld", base, size,
             enc_to, enc_from, page + 1, skip + size);
    json_t *next = more ? json_string(uri) : json_null();
    snprintf(uri, sizeof(uri), "%s?PageSize=%ld%s%s&Page=0", base, size, enc_to, enc_from);
    json_t *first = json_string(uri);
    snprintf(uri, sizeof(uri), "%s?PageSize=%ld%s%s&Page=%ld", base, size, enc_to, enc_from,
             page);
    json_t *j = json_pack("{s:o, s:i, s:o, s:o, s:i, s:i, s:n, s:i, s:s}", what[0] == 'M' ?
                          "messages" : "calls", items, "end",
                          (json_int_t)(skip + (long)json_array_size(items) - 1), "first_page_uri",
                          first, "next_page_uri", next, "page", (json_int_t)page, "page_size",
                          (json_int_t)size, "previous_page_uri", "start", (json_int_t)skip, "uri",
                          uri);
    a->status = 200;
    answer(a->req, 200, dump(j), latency, a->cut);
    return 0;
}

static void handle_api(struct evhttp_request *req, const char *path)
{
    struct api_req a = {.req = req, .path = path};
    char user[128], account[64], service[64];
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *body = malloc(len + 1);
    struct fault fault;
    int latency = sim.latency_ms;

    evbuffer_copyout(in, body, len);
    body[len] = '\0';
    TAILQ_INIT(&a.params);
    int authed = check_auth(req, user, sizeof(user));
    const char *ctype =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    int is_get = evhttp_request_get_command(req) == EVHTTP_REQ_GET;
    /* A GET's parameters are its query; a POST's its form body. */
    int form_ok = evhttp_parse_query_str(is_get ? (query ? query : "") : body, &a.params) == 0;

    if (!sim.no_record)
        a.record = json_pack("{s:s, s:s, s:s?, s:s, s:s?, s:[], s:f}", "method",
                         evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "GET",
                         "path", path, "query", query, "auth_user", user, "content_type", ctype,
                         "params", "time", now_s());
    json_t *params = json_object_get(a.record, "params");
    for (struct evkeyval *kv = a.params.tqh_first; params && kv; kv = kv->next.tqe_next)
        json_array_append_new(params, json_pack("[s, s]", kv->key, kv->value));

    if (sim.max_open && sim.open >= sim.max_open) {
        /* Twilio's concurrency limit: refused before anything is done. */
        fail_api(&a, 429, 20429, "Too many concurrent requests", 0);
        goto done;
    }
    if (take_fault(&a, &fault)) {
        latency += fault.latency_ms;
        if (fault.drop) {
            a.status = 0;
            answer(req, 0, NULL, latency, CUT_CLOSE);
            goto done;
        }
        a.cut = fault.cut;
        if (a.cut && a.record)
            json_object_set_new(a.record, "cut",
                                json_string(a.cut == CUT_RESET ? "reset" : "close"));
        if (fault.status) {
            fail_api(&a, fault.status, fault.code ? fault.code : 20500,
                     fault.message[0]       ? fault.message
                     : fault.status == 429 ? "Too many requests"
                                           : "Injected by twilio-sim",
                     latency);
            goto done;
        }
    }
    if (!authed) {
        fail_api(&a, 401, 20003, "Authenticate", latency);
        goto done;
    }
    if (is_get && form_ok && strcmp(path, "/v2/Attempts") == 0) {
        api_attempts(&a, latency);
        goto done;
    }
    if (is_get && form_ok && sscanf(path, "/2010-04-01/Accounts/%63[^/]/", account) == 1) {
        const char *rest = path + strlen("/2010-04-01/Accounts/") + strlen(account);
        if (strcmp(account, sim.account_sid) != 0)
            fail_api(&a, 404, 20404, "The requested resource was not found", latency);
        else if (strcmp(rest, "/Messages.json") == 0)
            api_list(&a, account, "Messages", &sim.messages, latency);
        else if (strcmp(rest, "/Calls.json") == 0)
            api_list(&a, account, "Calls", &sim.calls, latency);
        else
            fail_api(&a, 404, 20404, "The requested resource was not found", latency);
        goto done;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST || !form_ok ||
        !ctype || strncmp(ctype, "application/x-www-form-urlencoded", 33) != 0) {
        fail_api(&a, 400, 20001, "Expected a POST with a form-encoded body", latency);
        goto done;
    }
    if (sscanf(path, "/2010-04-01/Accounts/%63[^/]/", account) == 1) {
        const char *rest = path + strlen("/2010-04-01/Accounts/") + strlen(account);
        if (strcmp(account, sim.account_sid) != 0)
            fail_api(&a, 404, 20404, "The requested resource was not found", latency);
        else if (strcmp(rest, "/Messages.json") == 0)
            api_messages(&a, latency);
        else if (strcmp(rest, "/Calls.json") == 0)
            api_calls(&a, latency);
        else
            fail_api(&a, 404, 20404, "The requested resource was not found", latency);
    } else if (sscanf(path, "/v2/Services/%63[^/]/", service) == 1) {
        const char *rest = path + strlen("/v2/Services/") + strlen(service);
        if (strcmp(rest, "/Verifications") == 0)
            api_verify_start(&a, service, latency);
        else if (strcmp(rest, "/VerificationCheck") == 0)
            api_verify_check(&a, service, latency);
        else
            fail_api(&a, 404, 20404, "The requested resource was not found", latency);
    } else {
        fail_api(&a, 404, 20404, "The requested resource was not found", latency);
    }
done:
    if (a.record) {
        json_object_set_new(a.record, "status", json_integer(a.status));
        record(a.record);
    }
    evhttp_clear_headers(&a.params);
    free(body);
}

/* --- control endpoints --- */

static void reset(void)
{
    for (size_t i = 0; i < sim.rec_count; i++)
        json_decref(sim.recorded[(sim.rec_head + i) % MAX_RECORDED]);
    sim.rec_head = sim.rec_count = 0;
    sim.nverifs = 0;
    sim.nfaults = 0;
    sim.max_open = 0;
    sim.list_lag_ms = 0;
    sim.close_connections = 0;
    sim.no_callbacks = sim.cli_no_callbacks;
    store_clear(&sim.messages);
    store_clear(&sim.calls);
    store_clear(&sim.attempts);
}

/* A test endpoint's JSON body, or NULL. */
static json_t *body_json(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    return json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
}

static void control(struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (strcmp(path, "/__sim/health") == 0) {
        send_now(req, 200, "{\"ok\":true}");
    } else if (strcmp(path, "/__sim/reset") == 0 && cmd == EVHTTP_REQ_POST) {
        reset();
        send_now(req, 200, "{\"ok\":true}");
    } else if (strcmp(path, "/__sim/config") == 0 && cmd == EVHTTP_REQ_POST) {
        json_t *j = body_json(req);
        json_t *max_open = json_object_get(j, "max_open"), *lag = json_object_get(j, "list_lag_ms");
        json_t *callbacks = json_object_get(j, "callbacks");
        json_t *keepalive = json_object_get(j, "keepalive");
        if (json_is_boolean(callbacks))
            sim.no_callbacks = !json_is_true(callbacks);
        if (json_is_boolean(keepalive))
            sim.close_connections = !json_is_true(keepalive);
        if ((!max_open && !lag && !json_is_boolean(callbacks) && !json_is_boolean(keepalive)) || (max_open && (!json_is_integer(max_open) ||
                                                 json_integer_value(max_open) < 0)) ||
            (lag && (!json_is_integer(lag) || json_integer_value(lag) < 0))) {
            json_decref(j);
            send_now(req, 400, "{\"error\":\"expected {\\\"max_open\\\": N, \\\"list_lag_ms\\\": N}\"}");
            return;
        }
        if (max_open)
            sim.max_open = (int)json_integer_value(max_open);
        if (lag)
            sim.list_lag_ms = (int)json_integer_value(lag);
        json_decref(j);
        send_now(req, 200, "{\"ok\":true}");
    } else if (strcmp(path, "/__sim/requests") == 0) {
        struct evkeyvalq q;
        const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
        TAILQ_INIT(&q);
        if (query)
            evhttp_parse_query_str(query, &q);
        const char *suffix = evhttp_find_header(&q, "path_suffix");
        json_t *all = json_array();
        for (size_t i = 0; i < sim.rec_count; i++) {
            json_t *r = sim.recorded[(sim.rec_head + i) % MAX_RECORDED];
            const char *p = json_string_value(json_object_get(r, "path"));
            if (suffix && (strlen(p) < strlen(suffix) ||
                           strcmp(p + strlen(p) - strlen(suffix), suffix) != 0))
                continue;
            json_array_append(all, r);
        }
        evhttp_clear_headers(&q);
        char *s = dump(all);
        send_now(req, 200, s);
        free(s);
    } else if (strcmp(path, "/__sim/verifications") == 0) {
        json_t *all = json_array();
        for (size_t i = 0; i < sim.nverifs; i++) {
            struct verification *v = &sim.verifs[i];
            json_array_append_new(all, json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i}", "sid",
                                                 v->sid, "to", v->to, "channel", v->channel,
                                                 "code", v->code, "status", v->status, "checks",
                                                 v->checks, "sends", v->nsends));
        }
        char *s = dump(all);
        send_now(req, 200, s);
        free(s);
    } else if (strcmp(path, "/__sim/inbound") == 0 && cmd == EVHTTP_REQ_POST) {
        char sid[35];
        json_t *j = body_json(req);
        const char *url = json_string_value(json_object_get(j, "url"));
        const char *from = json_string_value(json_object_get(j, "from"));
        if (!url || !from) {
            json_decref(j);
            send_now(req, 400, "{\"error\":\"url and from are required\"}");
            return;
        }
        random_sid(sid, "SM");
        json_t *given = json_object_get(j, "sid");
        const char *text = json_string_value(json_object_get(j, "body"));
        const char *num_media = json_string_value(json_object_get(j, "num_media"));
        const char *kv[] = {"MessageSid", json_is_string(given) ? json_string_value(given) : sid,
                            "SmsSid", json_is_string(given) ? json_string_value(given) : sid,
                            "AccountSid", sim.account_sid, "From", from,
                            "To", json_string_value(json_object_get(j, "to")),
                            "Body", text ? text : "", "NumMedia", num_media ? num_media : "0",
                            "ApiVersion", "2010-04-01",
                            "OptOutType", json_string_value(json_object_get(j, "opt_out_type"))};
        post_webhook(url, kv, sizeof(kv) / sizeof(kv[0]), 0,
                     json_string_value(json_object_get(j, "token")));
        char *out = dump(json_pack("{s:s}", "sid", kv[1]));
        json_decref(j);
        send_now(req, 201, out);
        free(out);
    } else if (strcmp(path, "/__sim/faults/clear") == 0 && cmd == EVHTTP_REQ_POST) {
        sim.nfaults = 0;
        send_now(req, 200, "{\"ok\":true}");
    } else if (strcmp(path, "/__sim/faults") == 0 && cmd == EVHTTP_REQ_POST) {
        json_t *j = body_json(req);
        if (!json_is_object(j) || sim.nfaults == MAX_FAULTS) {
            json_decref(j);
            send_now(req, 400, "{\"error\":\"expected a JSON object\"}");
            return;
        }
        struct fault *f = &sim.faults[sim.nfaults++];
        memset(f, 0, sizeof(*f));
        const char *suffix = json_string_value(json_object_get(j, "path_suffix"));
        const char *to = json_string_value(json_object_get(j, "to"));
        snprintf(f->path_suffix, sizeof(f->path_suffix), "%s", suffix ? suffix : "");
        snprintf(f->to, sizeof(f->to), "%s", to ? to : "");
        json_t *times = json_object_get(j, "times");
        f->times = json_is_integer(times) ? (int)json_integer_value(times) : 1;
        f->latency_ms = (int)json_integer_value(json_object_get(j, "latency_ms"));
        f->status = (int)json_integer_value(json_object_get(j, "status"));
        f->code = (int)json_integer_value(json_object_get(j, "code"));
        const char *message = json_string_value(json_object_get(j, "message"));
        snprintf(f->message, sizeof(f->message), "%s", message ? message : "");
        f->drop = json_is_true(json_object_get(j, "drop"));
        const char *method = json_string_value(json_object_get(j, "method"));
        f->get = method && strcmp(method, "GET") == 0;
        const char *after = json_string_value(json_object_get(j, "after"));
        f->cut = !after ? CUT_NONE : strcmp(after, "reset") == 0 ? CUT_RESET : CUT_CLOSE;
        json_decref(j);
        send_now(req, 201, "{\"ok\":true}");
    } else {
        send_now(req, 404, "{\"error\":\"unknown simulator endpoint\"}");
    }
}

static void on_request(struct evhttp_request *req, void *arg)
{
    /* Like any HTTP server worth the name: no Nagle. Over TLS libevent
     * writes an answer as several records, and Nagle would hold the last
     * one for the client's delayed ACK (40 ms a request). */
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    evutil_socket_t fd = conn ? bufferevent_getfd(evhttp_connection_get_bufferevent(conn)) : -1;
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (!path)
        path = "/";
    if (strncmp(path, "/__sim/", 7) == 0)
        control(req, path);
    else
        handle_api(req, path);
}

/* HTTPS: each connection's bufferevent does TLS (the socket is set later
 * by evhttp). Sessions are resumable, as at Twilio. */
static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    SSL *ssl = SSL_new(arg);
    return ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE)
               : NULL;
}

static SSL_CTX *tls_ctx(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr, "twilio-sim: cannot use %s / %s for TLS\n", cert, key);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopbreak(sim.base);
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: twilio-sim --listen HOST:PORT [--latency-ms N] [--no-callbacks] [--no-record]\n"
                 "                  [--tls-cert PEM --tls-key PEM]\n"
                 "A stand-in for Twilio's Messages, Calls and Verify APIs, for tests.\n"
                 "With a certificate and key it serves HTTPS only.\n"
                 "Credentials: TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN (default: the\n"
                 "documented test values %s / %s), and optionally\n"
                 "TWILIO_API_KEY_SID / TWILIO_API_KEY_SECRET.\n",
            DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN);
}

int main(int argc, char **argv)
{
    const char *listen = NULL, *tls_cert = NULL, *tls_key = NULL;
    SSL_CTX *tls = NULL;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--listen") && i + 1 < argc)
            listen = argv[++i];
        else if (!strcmp(argv[i], "--latency-ms") && i + 1 < argc)
            sim.latency_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-callbacks"))
            sim.no_callbacks = sim.cli_no_callbacks = 1;
        else if (!strcmp(argv[i], "--no-record"))
            sim.no_record = 1;
        else if (!strcmp(argv[i], "--tls-cert") && i + 1 < argc)
            tls_cert = argv[++i];
        else if (!strcmp(argv[i], "--tls-key") && i + 1 < argc)
            tls_key = argv[++i];
        else if (!strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!listen || !tls_cert != !tls_key) {
        usage(stderr);
        return 2;
    }
    if (tls_cert && !(tls = tls_ctx(tls_cert, tls_key)))
        return 1;
    struct sockaddr_storage addr;
    int addrlen = sizeof(addr);
    if (evutil_parse_sockaddr_port(listen, (struct sockaddr *)&addr, &addrlen) != 0) {
        usage(stderr);
        return 2;
    }

    sim.account_sid = getenv("TWILIO_ACCOUNT_SID") ? getenv("TWILIO_ACCOUNT_SID") : DEFAULT_ACCOUNT_SID;
    sim.auth_token = getenv("TWILIO_AUTH_TOKEN") ? getenv("TWILIO_AUTH_TOKEN") : DEFAULT_AUTH_TOKEN;
    sim.key_sid = getenv("TWILIO_API_KEY_SID");
    sim.key_secret = getenv("TWILIO_API_KEY_SECRET");

    /* Benchmarks hold thousands of connections open. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    sim.verifs = calloc(MAX_VERIFICATIONS, sizeof(*sim.verifs));
    sim.base = event_base_new();
    struct evhttp *http = evhttp_new(sim.base);
    evhttp_set_gencb(http, on_request, NULL);
    if (tls)
        evhttp_set_bevcb(http, tls_bev, tls);
    evhttp_set_max_body_size(http, 1 << 20);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    /* evhttp_bind_socket listens with a backlog of 128: 10,000 clients
     * connecting at once then lose SYNs and retry a second later, which
     * would measure TCP's retransmission timer, not commsgate. The kernel
     * caps the backlog at net.core.somaxconn. */
    struct evconnlistener *lev = evconnlistener_new_bind(
        sim.base, NULL, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
        65535, (struct sockaddr *)&addr, addrlen);
    if (!lev || !evhttp_bind_listener(http, lev)) {
        fprintf(stderr, "twilio-sim: cannot listen on %s\n", listen);
        return 1;
    }
    struct event *sigint = evsignal_new(sim.base, SIGINT, on_signal, NULL);
    struct event *sigterm = evsignal_new(sim.base, SIGTERM, on_signal, NULL);
    evsignal_add(sigint, NULL);
    evsignal_add(sigterm, NULL);
    fprintf(stderr, "twilio-sim listening on %s%s\n", listen, tls ? " (HTTPS)" : "");

    event_base_dispatch(sim.base);

    while (outgoing_all)
        outgoing_free(outgoing_all);
    event_free(sigint);
    event_free(sigterm);
    evhttp_free(http);
    reset();
    free(sim.verifs);
    event_base_free(sim.base);
    SSL_CTX_free(tls);
    return 0;
}
