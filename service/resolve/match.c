/* Reading the form back with libevent's query parser (the same that reads
 * Twilio's webhooks), and matching list entries on recipient, sender, body
 * and creation time. */
#include "resolve/match.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"

int match_send_parse(struct match_send *s, const char *api, const char *form, int64_t t0_ms,
                     int64_t t1_ms)
{
    struct evkeyvalq q;
    int rc = CG_EINVAL;

    memset(s, 0, sizeof(*s));
    if (strcmp(api, "Messages") == 0)
        s->list = MATCH_MESSAGES;
    else if (strcmp(api, "Calls") == 0)
        s->list = MATCH_CALLS;
    else
        return CG_EINVAL;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(form, &q) != 0)
        goto done;
    const char *to = evhttp_find_header(&q, "To"), *from = evhttp_find_header(&q, "From");
    const char *service = evhttp_find_header(&q, "MessagingServiceSid");
    const char *body = evhttp_find_header(&q, "Body");
    if (!to || !*to || (size_t)snprintf(s->to, sizeof(s->to), "%s", to) >= sizeof(s->to) ||
        (size_t)snprintf(s->from, sizeof(s->from), "%s", from ? from : "") >= sizeof(s->from) ||
        (size_t)snprintf(s->service, sizeof(s->service), "%s", service ? service : "") >=
            sizeof(s->service))
        goto done;
    rc = CG_OK;
    if (s->list == MATCH_MESSAGES && !evhttp_find_header(&q, "ContentSid")) {
        s->body = strdup(body ? body : "");
        if (!s->body)
            rc = CG_ENOMEM;
    }
    s->t0_ms = t0_ms;
    s->t1_ms = t1_ms;
done:
    evhttp_clear_headers(&q);
    return rc;
}

void match_send_clear(struct match_send *s)
{
    free(s->body);
    s->body = NULL;
}

static int add_param(char *out, size_t cap, size_t *at, const char *name, const char *value)
{
    char *enc = evhttp_encode_uri(value);
    if (!enc)
        return CG_ENOMEM;
    int n = snprintf(out + *at, cap - *at, "%s%s=%s", *at ? "&" : "", name, enc);
    free(enc);
    if (n < 0 || (size_t)n >= cap - *at)
        return CG_EINVAL;
    *at += (size_t)n;
    return CG_OK;
}

/* No DateSent (or StartTime) filter: a message still queued at Twilio has
 * no date_sent (a call no start_time) and such a filter would hide exactly
 * the entry looked for. The window is checked on date_created instead. */
int match_query(const struct match_send *s, char *out, size_t cap)
{
    size_t at = 0;
    char size[16];
    int rc;

    if (!cap)
        return CG_EINVAL;
    out[0] = '\0';
    snprintf(size, sizeof(size), "%d", MATCH_PAGE_SIZE);
    rc = add_param(out, cap, &at, "To", s->to);
    if (!rc && s->from[0])
        rc = add_param(out, cap, &at, "From", s->from);
    if (!rc)
        rc = add_param(out, cap, &at, "PageSize", size);
    return rc;
}

int64_t match_date_ms(const char *date)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = date ? strptime(date, "%a, %d %b %Y %H:%M:%S %z", &tm) : NULL;
    if (!end || *end)
        return -1;
    long off = tm.tm_gmtoff;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return ((int64_t)t - off) * 1000;
}

static const char *str_of(const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static int matches(const struct match_send *s, const json_t *e)
{
    int64_t created = match_date_ms(str_of(e, "date_created"));
    if (created < 0 || created < s->t0_ms - MATCH_SKEW_MS || created > s->t1_ms + MATCH_SKEW_MS)
        return 0;
    if (!same(str_of(e, "to"), s->to))
        return 0;
    if (s->from[0] && !same(str_of(e, "from"), s->from))
        return 0;
    if (s->service[0] && !same(str_of(e, "messaging_service_sid"), s->service))
        return 0;
    if (s->list == MATCH_MESSAGES && s->body) {
        const char *body = str_of(e, "body");
        if (!same(body ? body : "", s->body))
            return 0;
    }
    return 1;
}

/* Lists come newest first, by the time the message was sent (the call
 * started), with those not sent yet first: an entry sent before the window
 * opened means every later entry is older still. */
static int older_than_window(const struct match_send *s, const json_t *e)
{
    int64_t at = match_date_ms(str_of(e, s->list == MATCH_MESSAGES ? "date_sent" : "start_time"));
    return at >= 0 && at < s->t0_ms - MATCH_SKEW_MS;
}

enum match_verdict match_page(const struct match_send *s, const json_t *page, const char **sid,
                              const char **status, const char **next)
{
    const json_t *items =
        json_object_get(page, s->list == MATCH_MESSAGES ? "messages" : "calls");
    size_t i;
    const json_t *e;

    if (!json_is_array(items))
        return MATCH_BAD;
    json_array_foreach(items, i, e) {
        if (matches(s, e) && str_of(e, "sid")) {
            *sid = str_of(e, "sid");
            *status = str_of(e, "status") ? str_of(e, "status") : "";
            return MATCH_FOUND;
        }
        if (older_than_window(s, e))
            return MATCH_END;
    }
    *next = str_of(page, "next_page_uri");
    /* Only a path on Twilio's own host is followed. */
    return *next && (*next)[0] == '/' ? MATCH_NEXT : MATCH_END;
}
