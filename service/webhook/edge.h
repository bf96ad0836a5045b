/* The webhook port faces the internet: what it refuses before a request is
 * read as a webhook, and how its listener survives running out of file
 * descriptors. The checks are pure (any thread); the guard runs on the loop
 * that owns the listener. */
#ifndef COMMSGATE_WEBHOOK_EDGE_H
#define COMMSGATE_WEBHOOK_EDGE_H

struct evconnlistener;
struct evkeyvalq;
struct event_base;

/* Limits of one request, set on the evhttp (server.c) or checked here. */
#define EDGE_MAX_HEADERS 64           /* Twilio sends about 15 */
#define EDGE_MAX_HEADERS_BYTES 16384  /* the request line and headers */
#define EDGE_TIMEOUT_S 10             /* a connection silent this long is cut */

/* 0 if the request's framing is sound; else the HTTP status to refuse with
 * (400, 431) and why: too many headers, Content-Length given twice (even
 * twice the same), both Content-Length and Transfer-Encoding, Content-Type
 * given twice. */
int edge_check_framing(const struct evkeyvalq *headers, const char **why);

enum edge_media { EDGE_MEDIA_OTHER, EDGE_MEDIA_FORM, EDGE_MEDIA_JSON };
/* The media type of a Content-Type value, exactly (case-insensitive, with
 * parameters such as charset allowed): application/x-www-form-urlencoded or
 * application/json; anything else (a prefix of them with more after it,
 * say) is OTHER. */
enum edge_media edge_media_type(const char *content_type);

/* Accept errors: when the process is out of file descriptors (or memory),
 * libevent's listener would retry at once, forever, logging each time. The
 * guard sheds the waiting connection (through a descriptor kept in reserve
 * for it), pauses the listener with a back-off (10 ms doubling to 1 s) and
 * logs one line a second at most, with the count. */
struct edge_guard;
int edge_guard_new(struct event_base *base, struct evconnlistener *lev, struct edge_guard **out);
void edge_guard_free(struct edge_guard **g);

#endif
