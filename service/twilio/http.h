/* Outbound HTTP for the Twilio client: libcurl multi handles (up to 16,
 * each with its own connections, so curl's per-request walks over them stay
 * short) driven by the loop thread's libevent base, so every request is
 * non-blocking and connections (and easy handles) are reused across
 * requests.
 *
 * Threads: every function here, and every `done` callback, runs on the
 * thread that runs `base` (the loop thread). Nothing here is thread-safe;
 * other threads hand work over with loop_post(). curl_global_init() must
 * have been called (main does it) before http_new. */
#ifndef COMMSGATE_TWILIO_HTTP_H
#define COMMSGATE_TWILIO_HTTP_H

#include <stddef.h>

struct event_base;
struct http_ctx; /* the multi handle, its libevent glue, a pool of idle easy handles */
struct http_req; /* one request in flight */

/* Used for a zero max_response_bytes: a response body is always bounded. */
#define HTTP_DEFAULT_MAX_RESPONSE (1024 * 1024)
/* Used for a zero idle_handles. */
#define HTTP_DEFAULT_IDLE_HANDLES 32

struct http_ctx_opts {
    /* CURLMOPT_MAX_TOTAL_CONNECTIONS and _HOST_; 0: no limit. Shared out
     * over the multi handles (one per 16 connections of the limit, up to 16
     * handles), rounded up: 100 allows 102. */
    long max_total_connections;
    long max_host_connections;
    const char *user_agent;     /* copied; NULL sends none */
    struct http_cas *cas;       /* the CAs trusted, shared with other contexts (one per
                                   loop); must outlive this one. NULL: the context makes
                                   its own from ca_file */
    const char *ca_file;        /* without cas: as http_cas_new */
    unsigned idle_handles;      /* finished requests kept for reuse; 0: the default */
};

/* The CAs trusted for HTTPS: ca_file (copied) instead of the system's;
 * NULL: those (the bundle libcurl was built with). Parsed once, a file given
 * here (CG_ECONFIG if it holds no certificate), the system's at the first
 * HTTPS connection, and shared by every connection of every context that
 * is given it. Any thread; free it after every context using it. */
struct http_cas;
int http_cas_new(const char *ca_file, struct http_cas **out);
void http_cas_free(struct http_cas **cas);

/* A Retry-After value (n bytes, not NUL-terminated): delay-seconds or an
 * HTTP date, in ms from now (0 for a date past); -1 when it is neither. Any
 * thread. */
long http_parse_retry_after(const char *v, size_t n);

/* Everything is copied by http_start; nothing needs to outlive the call. */
struct http_request {
    const char *method;       /* "POST" or "GET" */
    const char *url;          /* http:// or https:// only */
    const char *body;         /* POST body; may be NULL */
    size_t body_len;
    const char *content_type; /* POST only; NULL: application/x-www-form-urlencoded */
    const char *username;     /* HTTP basic auth when non-NULL */
    const char *password;
    long timeout_ms;          /* whole request, queueing for a connection included; > 0 */
    long connect_timeout_ms;  /* 0: bounded by timeout_ms only */
    size_t max_response_bytes; /* a longer body fails the request; 0: the default */
};

struct http_result {
    int ok;               /* the transfer completed and an HTTP status arrived */
    long status;          /* HTTP status, 0 if none */
    const char *body;     /* NUL-terminated, never NULL; borrowed until `done` returns */
    size_t body_len;
    int curl_code;        /* CURLcode; CURLE_FILESIZE_EXCEEDED for a body over the
                             maximum, CURLE_ABORTED_BY_CALLBACK from http_free */
    int maybe_sent;       /* 0 only if the request surely never reached the server
                             (resolve or connect failed, TLS handshake failed, or not
                             one request byte was written): only then is a retry of a
                             non-idempotent POST sure not to send twice */
    const char *error;    /* curl's error text, "" if ok; borrowed like body */
    long retry_after_ms;  /* from a Retry-After header (seconds or HTTP date), else -1 */
    double total_ms;      /* CURLINFO_TOTAL_TIME */
};

/* Called exactly once per started request, on the loop thread, never from
 * inside http_start. The request handle is invalid once it returns. It may
 * call http_start, http_cancel and http_free. */
typedef void http_done_fn(const struct http_result *res, void *data);

struct http_stats {
    unsigned in_flight;             /* started, `done` not called yet */
    unsigned idle_handles;          /* kept for reuse */
    unsigned connections;           /* open, in use or idle in curl's pool */
    unsigned long handles_created;  /* easy handles ever created */
    unsigned long requests_started;
};

/* Creates the context on `base`, which must outlive it. `opts` may be NULL
 * (no connection limits, no user agent). Returns CG_OK and sets *out, or
 * CG_ENOMEM / CG_EHTTP (curl refused an option), leaving *out unchanged. */
int http_new(struct event_base *base, const struct http_ctx_opts *opts, struct http_ctx **out);

/* Starts a request. `r` and its strings are copied; `data` is the caller's.
 * On success `done` will be called exactly once, later, from the event loop,
 * and *out (if out is non-NULL) is the handle for http_cancel, valid until
 * `done` is called. On failure (CG_EINVAL for a bad request, CG_ENOMEM,
 * CG_EHTTP when curl refuses it, CG_ESHUTDOWN while http_free runs) `done`
 * is never called and *out is unchanged. Errors found by curl while
 * running (a malformed URL, say) arrive through `done`. */
int http_start(struct http_ctx *ctx, const struct http_request *r, http_done_fn *done, void *data,
               struct http_req **out);

/* True once curl was about to write a POST's request (its connection up,
 * TLS included, and reused or new): from then on the server may have it.
 * False while it resolves, connects or handshakes: cancelling it then
 * sends nothing. Always true for a GET (nobody needs to know). */
int http_req_may_have_sent(const struct http_req *req);

/* Abandons a request: `done` is not called, and the handle is invalid.
 * NULL, or a request whose `done` is running, is a no-op. */
void http_cancel(struct http_req *req);

/* Fails every request in flight (`done` is called for each, before this
 * returns, with ok 0, curl_code CURLE_ABORTED_BY_CALLBACK and maybe_sent by
 * the rule above), then frees everything and clears *ctx. NULL or *ctx NULL
 * is a no-op. Allowed inside a `done` callback: the memory then goes once
 * the event-loop callback returns. */
void http_free(struct http_ctx **ctx);

/* Counters, for metrics and tests; a NULL ctx gives zeros. */
void http_get_stats(const struct http_ctx *ctx, struct http_stats *out);

#endif
