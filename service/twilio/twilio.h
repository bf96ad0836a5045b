/* The Twilio REST client: Messages, Calls and Verify over http.c, with
 * retries only where Twilio surely did not act. Loop thread only.
 *
 * Outcomes:
 *   TWILIO_OK       2xx: Twilio accepted; json holds the resource.
 *   TWILIO_REFUSED  Twilio answered 4xx with an error code: it did not act.
 *   TWILIO_FAILED   surely not acted on: connection failures before the
 *                   request was written (code and http_status 0), or
 *                   retryable refusals (HTTP 429 unless its code is final,
 *                   and codes 20429, 30429, 60212, 63017, 63018, ...) still
 *                   failing when the caller's time ran out (the last
 *                   refusal's code and status, and retry_after_ms).
 *   TWILIO_UNKNOWN  the request may have reached Twilio and no usable answer
 *                   came: a timeout after sending, a broken connection, or a
 *                   5xx without a retryable code. Never retried. */
#ifndef COMMSGATE_TWILIO_H
#define COMMSGATE_TWILIO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "twilio/errors.h"

struct event_base;
struct config;
struct twilio_ctx;
struct twilio_req;

enum twilio_api {
    TWILIO_API_MESSAGES,
    TWILIO_API_CALLS,
    TWILIO_API_VERIFY_START,
    TWILIO_API_VERIFY_CHECK,
    /* Reads, for resolving unknown outcomes (resolve/): a GET whose "form"
     * is the list's query (To=..&From=..&PageSize=..), or a page Twilio
     * gave: a path (next_page_uri, starting with '/') or a full URL on the
     * same API's base (next_page_url). A GET acts on nothing, so
     * every failure is retried within the time given, and one that never
     * gets through ends FAILED, never UNKNOWN. */
    TWILIO_API_MESSAGES_LIST,
    TWILIO_API_CALLS_LIST,
    TWILIO_API_VERIFY_ATTEMPTS_LIST, /* Verify's attempts (a next page is a full URL) */
    TWILIO_API_COUNT
};

enum twilio_outcome { TWILIO_OK, TWILIO_REFUSED, TWILIO_FAILED, TWILIO_UNKNOWN };

struct twilio_result {
    enum twilio_outcome outcome;
    long http_status;        /* of the last attempt; 0 if none arrived */
    int code;                /* Twilio error code, 0 if none */
    const char *message;     /* Twilio's message or the transport failure; never NULL */
    json_t *json;            /* a read's (list's) parsed body, or NULL; borrowed */
    const char *sid, *status;/* the answer's, when present, else NULL; borrowed */
    const char *channel;     /* Verify's channel, when present, else NULL; borrowed */
    int attempts;
    double elapsed_ms;
    /* FAILED after retryable refusals that outlasted the time: the wait
     * the next attempt needed (Retry-After, or the backoff); else -1. */
    int64_t retry_after_ms;
};

/* Called exactly once per started request, later, on the loop thread. */
typedef void twilio_done_fn(const struct twilio_result *res, void *data);

struct http_cas;
/* cfg, and cas (the CAs every loop's client trusts; NULL: its own, from
 * cfg->twilio_ca_file) must outlive the context. At most max_connections
 * to Twilio at once (0: no limit); requests beyond wait for one. */
int twilio_new(struct event_base *base, const struct config *cfg, struct http_cas *cas,
               long max_connections, struct twilio_ctx **out);

/* Starts a request with a urlencoded body (copied; for a read, its query or
 * page URI). Every attempt and every backoff fits in ms_left. On an error
 * return done is never called. */
int twilio_request(struct twilio_ctx *t, enum twilio_api api, const char *form, size_t form_len,
                   int64_t ms_left, twilio_done_fn *done, void *data, struct twilio_req **out);

/* The caller (callers file) this request is for: named in its log lines. */
void twilio_req_set_caller(struct twilio_req *req, const char *caller);
/* done is not called. NULL is a no-op. */
void twilio_cancel(struct twilio_req *req);
/* True while an attempt of req may have reached Twilio (Twilio may be
 * acting on it); false between attempts, when every attempt so far was
 * answered, and while an attempt is still connecting (TLS included). */
int twilio_on_wire(const struct twilio_req *req);

/* Ends every request in flight through done (FAILED or UNKNOWN, by whether
 * it may have been sent), frees everything, clears *t. NULL is a no-op. */
void twilio_free(struct twilio_ctx **t);

struct evbuffer;
/* Appends the clients' metrics (requests by outcome, latency histogram,
 * Twilio error codes, retries), summed over the n contexts t[] (one per
 * loop), in Prometheus text format. Any thread, while they all live. */
void twilio_metrics(struct twilio_ctx *const *t, int n, struct evbuffer *out);

/* The request path of an API, for logs and tests ("Messages.json", ...). */
const char *twilio_api_name(enum twilio_api api);

#endif
