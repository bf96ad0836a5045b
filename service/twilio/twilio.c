/* Twilio REST requests with deadline-bound retries. */
#include "twilio/twilio.h"

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "loop/loop.h"
#include "twilio/answer.h"
#include "twilio/http.h"

#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 2000
#define MAX_ATTEMPTS 5
/* An attempt given less time than this is not worth starting. */
#define MIN_ATTEMPT_MS 50
#define CONNECT_TIMEOUT_MS 3000

static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))
#define MAX_ERROR_CODES 64

/* Loop thread only, like everything here. */
/* Written by the context's loop thread only, read by whichever loop serves
 * /metrics (it sums every loop's): hence atomics, updated relaxed. */
struct twilio_stats {
    atomic_ulong outcomes[TWILIO_API_COUNT][4];
    atomic_ulong retries[TWILIO_API_COUNT];
    atomic_ulong hist[TWILIO_API_COUNT][NBUCKETS];
    atomic_ulong sum_us[TWILIO_API_COUNT];
    atomic_ulong count[TWILIO_API_COUNT];
    struct {
        atomic_int code;
        atomic_ulong n;
    } errors[MAX_ERROR_CODES];
};

#define COUNT(counter, n) atomic_fetch_add_explicit(&(counter), (n), memory_order_relaxed)
#define READ(counter) atomic_load_explicit(&(counter), memory_order_relaxed)

struct twilio_ctx {
    struct twilio_stats stats;
    struct event_base *base;
    const struct config *cfg;
    struct http_ctx *http;
    char url[TWILIO_API_COUNT][600];
    char user[64];
    char pass[160];
    uint64_t rng;
    struct twilio_req *reqs; /* in flight, for twilio_free */
    int freeing;
};

struct twilio_req {
    struct twilio_ctx *t;
    struct twilio_req *prev, *next;
    enum twilio_api api;
    char *form;
    size_t form_len;
    double start_ms, deadline_ms;
    int attempts;
    struct http_req *http;
    struct event *timer;
    twilio_done_fn *done;
    void *data;
    /* What the last attempt said, for a final FAILED. */
    long last_wait_ms; /* what the next attempt would have waited, or -1 */
    long last_status;
    int last_code;
    char last_msg[200];
    char caller[40]; /* who asked (the callers file's name), for the logs; "" if none */
};

static const char *const api_names[TWILIO_API_COUNT] = {
    "Messages.json", "Calls.json", "Verifications", "VerificationCheck",
    "Messages.json (list)", "Calls.json (list)", "Attempts (list)"};

static int is_read(enum twilio_api api)
{
    return api == TWILIO_API_MESSAGES_LIST || api == TWILIO_API_CALLS_LIST ||
           api == TWILIO_API_VERIFY_ATTEMPTS_LIST;
}

/* The base URL of an API's host, for the pages a list links to. */
static const char *base_of(const struct twilio_ctx *t, enum twilio_api api)
{
    return api == TWILIO_API_VERIFY_START || api == TWILIO_API_VERIFY_CHECK ||
                   api == TWILIO_API_VERIFY_ATTEMPTS_LIST
               ? t->cfg->verify_base_url
               : t->cfg->api_base_url;
}

/* A read's page: a path on the API's host, or a full URL on it (never
 * another host, whatever a page links to). */
static int page_ok(const struct twilio_ctx *t, enum twilio_api api, const char *page)
{
    const char *base = base_of(t, api);
    size_t n = strlen(base);
    return strncmp(page, "http", 4) != 0 ||
           (strncmp(page, base, n) == 0 && (page[n] == '/' || page[n] == '?'));
}

const char *twilio_api_name(enum twilio_api api)
{
    return api < TWILIO_API_COUNT ? api_names[api] : "?";
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* xorshift64*: jitter needs spread, not secrecy. */
static uint64_t rnd(struct twilio_ctx *t)
{
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    return t->rng * 2685821657736338717ULL;
}

int twilio_new(struct event_base *base, const struct config *cfg, struct http_cas *cas,
               long max_connections, struct twilio_ctx **out)
{
    struct twilio_ctx *t = calloc(1, sizeof(*t));
    struct http_ctx_opts o = {.max_host_connections = 0,
                              .user_agent = "commsgate/0.1",
                              .cas = cas,
                              .ca_file = cfg->twilio_ca_file,
                              .idle_handles = 64};
    int rc;

    if (!t)
        return CG_ENOMEM;
    t->base = base;
    t->cfg = cfg;
    o.max_total_connections = max_connections;
    rc = http_new(base, &o, &t->http);
    if (rc) {
        free(t);
        return rc;
    }
    snprintf(t->url[TWILIO_API_MESSAGES], sizeof(t->url[0]),
             "%s/2010-04-01/Accounts/%s/Messages.json", cfg->api_base_url, cfg->account_sid);
    snprintf(t->url[TWILIO_API_CALLS], sizeof(t->url[0]), "%s/2010-04-01/Accounts/%s/Calls.json",
             cfg->api_base_url, cfg->account_sid);
    snprintf(t->url[TWILIO_API_VERIFY_START], sizeof(t->url[0]), "%s/v2/Services/%s/Verifications",
             cfg->verify_base_url, cfg->verify_service_sid);
    snprintf(t->url[TWILIO_API_VERIFY_CHECK], sizeof(t->url[0]),
             "%s/v2/Services/%s/VerificationCheck", cfg->verify_base_url,
             cfg->verify_service_sid);
    memcpy(t->url[TWILIO_API_MESSAGES_LIST], t->url[TWILIO_API_MESSAGES], sizeof(t->url[0]));
    memcpy(t->url[TWILIO_API_CALLS_LIST], t->url[TWILIO_API_CALLS], sizeof(t->url[0]));
    snprintf(t->url[TWILIO_API_VERIFY_ATTEMPTS_LIST], sizeof(t->url[0]), "%s/v2/Attempts",
             cfg->verify_base_url);
    if (cfg->api_key_sid[0]) {
        snprintf(t->user, sizeof(t->user), "%s", cfg->api_key_sid);
        snprintf(t->pass, sizeof(t->pass), "%s", cfg->api_key_secret);
    } else {
        snprintf(t->user, sizeof(t->user), "%s", cfg->account_sid);
        snprintf(t->pass, sizeof(t->pass), "%s", cfg->auth_token);
    }
    if (RAND_bytes((unsigned char *)&t->rng, sizeof(t->rng)) != 1 || t->rng == 0)
        t->rng = (uint64_t)time(NULL) | 1;
    *out = t;
    return CG_OK;
}

static void unlink_req(struct twilio_req *r)
{
    struct twilio_ctx *t = r->t;
    if (r->prev)
        r->prev->next = r->next;
    else
        t->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
}

static void req_free(struct twilio_req *r)
{
    unlink_req(r);
    if (r->timer)
        event_free(r->timer);
    free(r->form);
    free(r);
}

/* Twilio's answer as read: its fields, and for a read (a list) the tree. */
struct parsed {
    struct twilio_answer a;
    json_t *json;
};

static void finish(struct twilio_req *r, enum twilio_outcome outcome, long http_status, int code,
                   const char *message, const struct parsed *p)
{
    json_t *json = p ? p->json : NULL;
    char msg[sizeof(r->last_msg)];
    /* message may be r->last_msg, and r is freed before done runs. */
    snprintf(msg, sizeof(msg), "%s", message ? message : "");
    struct twilio_result res = {.outcome = outcome,
                                .http_status = http_status,
                                .code = code,
                                .message = msg,
                                .json = json,
                                .attempts = r->attempts,
                                .elapsed_ms = now_ms() - r->start_ms,
                                .retry_after_ms = outcome == TWILIO_FAILED && http_status
                                                      ? r->last_wait_ms
                                                      : -1};
    struct twilio_stats *st = &r->t->stats;
    double secs = res.elapsed_ms / 1000.0;
    COUNT(st->outcomes[r->api][outcome], 1);
    COUNT(st->sum_us[r->api], (unsigned long)(res.elapsed_ms * 1000));
    COUNT(st->count[r->api], 1);
    for (size_t b = 0; b < NBUCKETS; b++)
        if (secs <= buckets[b])
            COUNT(st->hist[r->api][b], 1);
    for (int i = 0; code && i < MAX_ERROR_CODES; i++) {
        int seen = READ(st->errors[i].code);
        if (seen == code || seen == 0) {
            atomic_store_explicit(&st->errors[i].code, code, memory_order_relaxed);
            COUNT(st->errors[i].n, 1);
            break;
        }
    }
    if (p) {
        res.sid = p->a.sid[0] ? p->a.sid : NULL;
        res.status = p->a.status[0] ? p->a.status : NULL;
        res.channel = p->a.channel[0] ? p->a.channel : NULL;
    }
    if (outcome != TWILIO_OK)
        log_event(outcome == TWILIO_REFUSED ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, "twilio_failed",
                  json_pack("{s:s, s:s, s:s, s:I, s:i, s:i, s:s}", "api", api_names[r->api],
                            "caller", r->caller,
                            "outcome",
                            outcome == TWILIO_REFUSED  ? "refused"
                            : outcome == TWILIO_FAILED ? "failed"
                                                       : "unknown",
                            "http_status", (json_int_t)http_status, "code", code, "attempts",
                            r->attempts, "msg",
                            /* Twilio's text can echo what it was sent: its code says
                             * enough. A transport error is curl's, and safe. */
                            http_status ? "" : res.message));
    twilio_done_fn *done = r->done;
    void *data = r->data;
    req_free(r);
    done(&res, data);
}

static void start_attempt(struct twilio_req *r);

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    start_attempt(arg);
}

/* Schedules another attempt if one fits in the deadline; otherwise ends the
 * request as FAILED with what the last attempt said. */
static void retry_or_fail(struct twilio_req *r, long retry_after_ms)
{
    struct twilio_ctx *t = r->t;
    double left = r->deadline_ms - now_ms();
    uint64_t ceiling = BACKOFF_BASE_MS << (r->attempts < 5 ? r->attempts : 5);
    if (ceiling > BACKOFF_CAP_MS)
        ceiling = BACKOFF_CAP_MS;
    long wait = (long)(rnd(t) % (ceiling + 1));
    if (retry_after_ms > wait)
        wait = retry_after_ms;

    /* The caller's hint, if this is the end: Twilio's Retry-After, else
     * the top of the backoff (the jitter may have drawn 0). */
    r->last_wait_ms = retry_after_ms > (long)ceiling ? retry_after_ms : (long)ceiling;
    if (t->freeing || r->attempts >= MAX_ATTEMPTS || wait + MIN_ATTEMPT_MS > left) {
        finish(r, TWILIO_FAILED, r->last_status, r->last_code, r->last_msg, NULL);
        return;
    }
    COUNT(t->stats.retries[r->api], 1);
    log_event(LOG_LEVEL_INFO, "twilio_retry",
              json_pack("{s:s, s:s, s:i, s:i, s:I, s:i}", "api", api_names[r->api], "caller",
                        r->caller, "attempt",
                        r->attempts, "code", r->last_code, "http_status",
                        (json_int_t)r->last_status, "wait_ms", (int)wait));
    if (!r->timer)
        r->timer = evtimer_new(t->base, on_retry_timer, r);
    struct timeval tv = {wait / 1000, (wait % 1000) * 1000};
    if (!r->timer || evtimer_add(r->timer, &tv))
        finish(r, TWILIO_FAILED, r->last_status, r->last_code, r->last_msg, NULL);
}

static void on_http(const struct http_result *h, void *data)
{
    struct twilio_req *r = data;
    struct parsed p = {.json = NULL};
    char msg[200];

    r->http = NULL;
    if (!h->ok) {
        snprintf(r->last_msg, sizeof(r->last_msg), "%s", h->error[0] ? h->error : "transfer failed");
        r->last_status = 0;
        r->last_code = 0;
        if (!h->maybe_sent || is_read(r->api)) /* a read acts on nothing */
            retry_or_fail(r, -1);
        else
            finish(r, TWILIO_UNKNOWN, 0, 0, r->last_msg, NULL);
        return;
    }
    /* The fields every answer is read for, without building a tree; a
     * list read that succeeded is walked by resolve/, so it gets one. */
    if (h->body_len && twilio_answer_parse(h->body, h->body_len, &p.a) == CG_OK &&
        is_read(r->api) && h->status >= 200 && h->status < 300)
        p.json = json_loadb(h->body, h->body_len, 0, NULL);
    int code = p.a.code;
    if (p.a.message[0])
        snprintf(msg, sizeof(msg), "%s", p.a.message);
    else
        snprintf(msg, sizeof(msg), "HTTP %ld", h->status);

    if (h->status >= 200 && h->status < 300) {
        finish(r, TWILIO_OK, h->status, 0, "", &p);
        json_decref(p.json);
        return;
    }
    const struct twilio_error_info *info = twilio_error_lookup(code);
    r->last_status = h->status;
    r->last_code = code;
    snprintf(r->last_msg, sizeof(r->last_msg), "%s", msg);
    /* A 429 is retried unless its code says waiting will not help (Verify's
     * 60202/60203 come as 429 too). */
    if ((h->status == 429 && (!info || info->retryable)) || (info && info->retryable) ||
        (h->status >= 500 && is_read(r->api)))
        retry_or_fail(r, h->retry_after_ms);
    else if (h->status >= 500)
        finish(r, TWILIO_UNKNOWN, h->status, code, msg, &p);
    else
        finish(r, TWILIO_REFUSED, h->status, code, msg, &p);
}

static void start_attempt(struct twilio_req *r)
{
    struct twilio_ctx *t = r->t;
    long left = (long)(r->deadline_ms - now_ms());
    char url[sizeof(t->url[0]) + 2048];
    int read = is_read(r->api);
    if (read && r->form[0] == '/') /* a page URI from Twilio: on the same host */
        snprintf(url, sizeof(url), "%s%s", base_of(t, r->api), r->form);
    else if (read && strncmp(r->form, "http", 4) == 0) /* a page URL, checked by twilio_request */
        snprintf(url, sizeof(url), "%s", r->form);
    else if (read)
        snprintf(url, sizeof(url), "%s?%s", t->url[r->api], r->form);
    struct http_request hr = {.method = read ? "GET" : "POST",
                              .url = read ? url : t->url[r->api],
                              .body = read ? NULL : r->form,
                              .body_len = read ? 0 : r->form_len,
                              .content_type = "application/x-www-form-urlencoded",
                              .username = t->user,
                              .password = t->pass,
                              .timeout_ms = left,
                              .connect_timeout_ms =
                                  left < CONNECT_TIMEOUT_MS ? left : CONNECT_TIMEOUT_MS,
                              .max_response_bytes = 256 * 1024};
    if (left < MIN_ATTEMPT_MS) {
        finish(r, TWILIO_FAILED, r->last_status, r->last_code,
               r->last_msg[0] ? r->last_msg : "no time left for a Twilio request", NULL);
        return;
    }
    r->attempts++;
    if (http_start(t->http, &hr, on_http, r, &r->http)) {
        snprintf(r->last_msg, sizeof(r->last_msg), "cannot start the HTTP request");
        finish(r, TWILIO_FAILED, 0, 0, r->last_msg, NULL);
    }
}

/* Defers the first attempt's failure so done never runs inside
 * twilio_request: the first attempt starts from a zero timer. */
void twilio_req_set_caller(struct twilio_req *r, const char *caller)
{
    snprintf(r->caller, sizeof(r->caller), "%s", caller ? caller : "");
}

int twilio_request(struct twilio_ctx *t, enum twilio_api api, const char *form, size_t form_len,
                   int64_t ms_left, twilio_done_fn *done, void *data, struct twilio_req **out)
{
    struct twilio_req *r;
    LOOP_ASSERT_OWNER(t->base);

    if (api >= TWILIO_API_COUNT || !done || t->freeing ||
        (is_read(api) && (form_len > 2000 || !page_ok(t, api, form))))
        return CG_EINVAL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return CG_ENOMEM;
    r->form = malloc(form_len + 1);
    r->timer = evtimer_new(t->base, on_retry_timer, r);
    if (!r->form || !r->timer) {
        if (r->timer)
            event_free(r->timer);
        free(r->form);
        free(r);
        return CG_ENOMEM;
    }
    memcpy(r->form, form, form_len);
    r->form[form_len] = '\0';
    r->form_len = form_len;
    r->t = t;
    r->api = api;
    r->done = done;
    r->data = data;
    r->start_ms = now_ms();
    r->deadline_ms = r->start_ms + (double)ms_left;
    r->next = t->reqs;
    if (t->reqs)
        t->reqs->prev = r;
    t->reqs = r;
    struct timeval zero = {0, 0};
    evtimer_add(r->timer, &zero);
    if (out)
        *out = r;
    return CG_OK;
}

void twilio_cancel(struct twilio_req *r)
{
    if (!r)
        return;
    LOOP_ASSERT_OWNER(r->t->base);
    http_cancel(r->http);
    req_free(r);
}

int twilio_on_wire(const struct twilio_req *r)
{
    return r && r->http != NULL && http_req_may_have_sent(r->http);
}

void twilio_free(struct twilio_ctx **tp)
{
    struct twilio_ctx *t = *tp;
    if (!t)
        return;
    t->freeing = 1;
    /* Requests waiting for an attempt: none is on the wire. */
    for (struct twilio_req *r = t->reqs, *next; r; r = next) {
        next = r->next;
        if (!r->http)
            finish(r, TWILIO_FAILED, r->last_status, r->last_code,
                   "commsgate is shutting down; nothing was sent", NULL);
    }
    /* Requests on the wire end through on_http (maybe_sent decides). */
    http_free(&t->http);
    free(t);
    *tp = NULL;
}

/* Every loop's counters summed, for one rendering of /metrics. */
struct twilio_totals {
    unsigned long outcomes[TWILIO_API_COUNT][4];
    unsigned long retries[TWILIO_API_COUNT];
    unsigned long hist[TWILIO_API_COUNT][NBUCKETS];
    unsigned long sum_us[TWILIO_API_COUNT];
    unsigned long count[TWILIO_API_COUNT];
    struct {
        int code;
        unsigned long n;
    } errors[MAX_ERROR_CODES];
};

static void add_stats(struct twilio_totals *tot, struct twilio_stats *st)
{
    for (int a = 0; a < TWILIO_API_COUNT; a++) {
        for (int o = 0; o < 4; o++)
            tot->outcomes[a][o] += READ(st->outcomes[a][o]);
        tot->retries[a] += READ(st->retries[a]);
        for (size_t b = 0; b < NBUCKETS; b++)
            tot->hist[a][b] += READ(st->hist[a][b]);
        tot->sum_us[a] += READ(st->sum_us[a]);
        tot->count[a] += READ(st->count[a]);
    }
    for (int i = 0; i < MAX_ERROR_CODES && READ(st->errors[i].code); i++) {
        int code = READ(st->errors[i].code);
        for (int k = 0; k < MAX_ERROR_CODES; k++) {
            if (tot->errors[k].code == code || tot->errors[k].code == 0) {
                tot->errors[k].code = code;
                tot->errors[k].n += READ(st->errors[i].n);
                break;
            }
        }
    }
}

void twilio_metrics(struct twilio_ctx *const *t, int n, struct evbuffer *out)
{
    static const char *const outcomes[] = {"ok", "refused", "failed", "unknown"};
    struct twilio_totals *tot = calloc(1, sizeof(*tot));

    if (!tot)
        return; /* the page goes out without these */
    for (int i = 0; i < n; i++)
        add_stats(tot, &t[i]->stats);
    evbuffer_add_printf(out, "# HELP commsgate_twilio_requests_total Twilio requests by API and "
                             "outcome.\n# TYPE commsgate_twilio_requests_total counter\n");
    for (int a = 0; a < TWILIO_API_COUNT; a++)
        for (int o = 0; o < 4; o++)
            evbuffer_add_printf(out,
                                "commsgate_twilio_requests_total{api=\"%s\",outcome=\"%s\"} %lu\n",
                                api_names[a], outcomes[o], tot->outcomes[a][o]);
    evbuffer_add_printf(out, "# HELP commsgate_twilio_retries_total Retried Twilio attempts.\n"
                             "# TYPE commsgate_twilio_retries_total counter\n");
    for (int a = 0; a < TWILIO_API_COUNT; a++)
        evbuffer_add_printf(out, "commsgate_twilio_retries_total{api=\"%s\"} %lu\n", api_names[a],
                            tot->retries[a]);
    evbuffer_add_printf(out, "# HELP commsgate_twilio_errors_total Twilio error codes received.\n"
                             "# TYPE commsgate_twilio_errors_total counter\n");
    for (int i = 0; i < MAX_ERROR_CODES && tot->errors[i].code; i++)
        evbuffer_add_printf(out, "commsgate_twilio_errors_total{code=\"%d\"} %lu\n",
                            tot->errors[i].code, tot->errors[i].n);
    evbuffer_add_printf(out, "# HELP commsgate_twilio_request_duration_seconds Time per Twilio "
                             "request, retries included.\n"
                             "# TYPE commsgate_twilio_request_duration_seconds histogram\n");
    for (int a = 0; a < TWILIO_API_COUNT; a++) {
        for (size_t b = 0; b < NBUCKETS; b++)
            evbuffer_add_printf(out,
                                "commsgate_twilio_request_duration_seconds_bucket{api=\"%s\",le=\"%g\"} %lu\n",
                                api_names[a], buckets[b], tot->hist[a][b]);
        evbuffer_add_printf(out,
                            "commsgate_twilio_request_duration_seconds_bucket{api=\"%s\",le=\"+Inf\"} %lu\n"
                            "commsgate_twilio_request_duration_seconds_sum{api=\"%s\"} %g\n"
                            "commsgate_twilio_request_duration_seconds_count{api=\"%s\"} %lu\n",
                            api_names[a], tot->count[a], api_names[a], tot->sum_us[a] / 1e6,
                            api_names[a], tot->count[a]);
    }
    free(tot);
}
