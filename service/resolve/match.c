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
    else if (strcmp(api, "Attempts") == 0)
        s->list = MATCH_ATTEMPTS;
    else
        return CG_EINVAL;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(form, &q) != 0)
        goto done;
    const char *to = evhttp_find_header(&q, "To"), *from = evhttp_find_header(&q, "From");
    const char *service = evhttp_find_header(&q, "MessagingServiceSid");
    const char *body = evhttp_find_header(&q, "Body");
    const char *channel = evhttp_find_header(&q, "Channel");
    if (!to || !*to || (size_t)snprintf(s->to, sizeof(s->to), "%s", to) >= sizeof(s->to) ||
        (size_t)snprintf(s->from, sizeof(s->from), "%s", from ? from : "") >= sizeof(s->from) ||
        (size_t)snprintf(s->service, sizeof(s->service), "%s", service ? service : "") >=
            sizeof(s->service) ||
        (size_t)snprintf(s->channel, sizeof(s->channel), "%s", channel ? channel : "sms") >=
            sizeof(s->channel))
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
    if (s->list == MATCH_ATTEMPTS) {
        /* Attempts are made when the code is sent: a date filter hides
         * nothing looked for here. */
        char after[32];
        time_t t = (time_t)((s->t0_ms - MATCH_SKEW_MS) / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(after, sizeof(after), "%Y-%m-%dT%H:%M:%SZ", &tm);
        rc = add_param(out, cap, &at, "VerifyServiceSid", s->service);
        if (!rc)
            rc = add_param(out, cap, &at, "ChannelData.To", s->to);
        if (!rc)
            rc = add_param(out, cap, &at, "Channel", s->channel);
        if (!rc)
            rc = add_param(out, cap, &at, "DateCreatedAfter", after);
        if (!rc)
            rc = add_param(out, cap, &at, "PageSize", size);
        return rc;
    }
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
    if (!end && date) {
        /* ISO 8601, in UTC as Twilio writes it: Z or +00:00. */
        memset(&tm, 0, sizeof(tm));
        end = strptime(date, "%Y-%m-%dT%H:%M:%S", &tm);
        if (end && *end == '.')
            end += 1 + strspn(end + 1, "0123456789");
        if (end && (strcmp(end, "Z") == 0 || strcmp(end, "+00:00") == 0))
            end += strlen(end);
    }
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
    if (s->list == MATCH_ATTEMPTS)
        return same(str_of(json_object_get(e, "channel_data"), "to"), s->to) &&
               same(str_of(e, "channel"), s->channel) && str_of(e, "verification_sid");
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
    static const char *const sorted_by[] = {"date_sent", "start_time", "date_created"};
    int64_t at = match_date_ms(str_of(e, sorted_by[s->list]));
    return at >= 0 && at < s->t0_ms - MATCH_SKEW_MS;
}

enum match_verdict match_page(const struct match_send *s, const json_t *page, const char **sid,
                              const char **status, const char **next)
{
    static const char *const item_names[] = {"messages", "calls", "attempts"};
    const json_t *items = json_object_get(page, item_names[s->list]);
    size_t i;
    const json_t *e;

    if (!json_is_array(items))
        return MATCH_BAD;
    json_array_foreach(items, i, e) {
        if (s->list == MATCH_ATTEMPTS && matches(s, e)) {
            /* The attempt's verification, as StartVerification answers it. */
            *sid = str_of(e, "verification_sid");
            *status = same(str_of(e, "conversion_status"), "converted") ? "approved" : "pending";
            return MATCH_FOUND;
        }
        if (s->list != MATCH_ATTEMPTS && matches(s, e) && str_of(e, "sid")) {
            *sid = str_of(e, "sid");
            *status = str_of(e, "status") ? str_of(e, "status") : "";
            return MATCH_FOUND;
        }
        if (older_than_window(s, e))
            return MATCH_END;
    }
    /* The 2010 API links its next page by path, Verify by full URL. */
    *next = s->list == MATCH_ATTEMPTS ? str_of(json_object_get(page, "meta"), "next_page_url")
                                      : str_of(page, "next_page_uri");
    if (!*next)
        return MATCH_END;
    if (s->list == MATCH_ATTEMPTS)
        return strncmp(*next, "http", 4) == 0 ? MATCH_NEXT : MATCH_END;
    return (*next)[0] == '/' ? MATCH_NEXT : MATCH_END;
}
