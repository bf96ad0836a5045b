/* The sweep, and one resolution's life: READING the key's record, LISTING
 * Twilio's pages, WRITING what was found. */
#include "resolve/resolver.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "loop/loop.h"
#include "redis/idempotency.h"
#include "redis/keys.h"
#include "redis/message_status.h"
#include "redis/resolve_queue.h"
#include "resolve/match.h"
#include "twilio/twilio.h"

/* Resolutions under way per replica; the queue holds the rest. */
#define MAX_JOBS 32
/* A taken entry comes back to the queue after this unless settled first:
 * longer than one resolution (MAX_PAGES reads of LIST_MS at most). */
#define LEASE_MS 120000
#define LIST_MS 10000
/* Pages read per resolution: a recipient who got more than this many
 * messages from one sender since the window opened is looked at again
 * later rather than guessed at. */
#define MAX_PAGES 10
/* Not in the lists yet, and not long enough to say absent: look again in
 * a quarter of the catch-up time, between these. */
#define AGAIN_MIN_MS 500
#define AGAIN_MAX_MS 15000

#define RESULT_MAP(X)                                                            \
    X(RESULT_FOUND, "found")          /* Twilio has it: the record keeps the SID */ \
    X(RESULT_ABSENT, "absent")        /* Twilio has nothing: the key is free */      \
    X(RESULT_NOT_YET, "not_yet")      /* not in the lists yet: looked at again */    \
    X(RESULT_SETTLED, "settled")      /* settled meanwhile: nothing to do */         \
    X(RESULT_UNRESOLVABLE, "unresolvable") /* an old record without its request */   \
    X(RESULT_FAILED, "failed")        /* Twilio or Redis failed: tried again later */

enum result {
#define RESULT_ENUM(v, name) v,
    RESULT_MAP(RESULT_ENUM)
#undef RESULT_ENUM
    RESULT_COUNT
};

static const char *const result_names[] = {
#define RESULT_NAME(v, name) name,
    RESULT_MAP(RESULT_NAME)
#undef RESULT_NAME
};

enum job_state { JOB_READING, JOB_LISTING, JOB_WRITING };

struct job {
    struct resolver *r;
    struct job *prev, *next;
    enum job_state state;
    struct match_send send;
    int have_send;
    int pages;
    enum result writing; /* JOB_WRITING: RESULT_FOUND or RESULT_ABSENT */
    int64_t t0;
    struct twilio_req *twilio; /* JOB_LISTING */
    char key[KEYS_MAX];
};

struct resolver {
    struct resolver_deps d;
    struct event *timer;
    struct job *jobs;
    int njobs;
    int taking;   /* a take is in Redis */
    int in_redis; /* jobs waiting for a Redis reply, and the take */
    int stopping; /* resolver_free ran: freed when in_redis drops to 0 */
    unsigned long results[RESULT_COUNT];
};

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_state(struct job *j, enum job_state to)
{
    /* READING -> LISTING -> (LISTING ->)* WRITING; a job ends in any. */
    assert(to > j->state || (to == JOB_LISTING && j->state == JOB_LISTING));
    j->state = to;
}

/* --- a resolution --- */

static void job_free(struct job *j)
{
    struct resolver *r = j->r;
    if (j->prev)
        j->prev->next = j->next;
    else
        r->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    r->njobs--;
    if (j->have_send)
        match_send_clear(&j->send);
    free(j);
}

static void maybe_free_resolver(struct resolver *r)
{
    if (r->stopping && r->in_redis == 0) {
        assert(!r->jobs);
        free(r);
    }
}

/* A Redis reply for j came back: 1 if the job is to go on. */
static int back_from_redis(struct job *j)
{
    struct resolver *r = j->r;
    r->in_redis--;
    if (!r->stopping)
        return 1;
    job_free(j);
    maybe_free_resolver(r);
    return 0;
}

static void end(struct job *j, enum result res)
{
    j->r->results[res]++;
    job_free(j);
}

/* Look again later: the entry, still leased to us, is made due then. */
static void later(struct job *j, int64_t in_ms, enum result res)
{
    resolve_queue_add(j->r->d.queue, j->key, in_ms, 0);
    end(j, res);
}

static void on_written(int ok, void *data)
{
    struct job *j = data;
    if (!back_from_redis(j))
        return;
    if (ok < 0) { /* Redis failed: the lease brings the entry back */
        end(j, RESULT_FAILED);
        return;
    }
    /* Absent but kept: the record changed since it was read (a status
     * callback found it, or it settled); it is no longer ours either way. */
    resolve_queue_done(j->r->d.queue, j->key);
    end(j, ok ? j->writing : RESULT_SETTLED);
}

static void found(struct job *j, const char *sid, const char *status)
{
    struct resolver *r = j->r;
    log_event(LOG_LEVEL_INFO, "outcome_resolved",
              json_pack("{s:s, s:s, s:s, s:s, s:i}", "key", j->key, "result", "found", "sid", sid,
                        "status", status, "pages", j->pages));
    set_state(j, JOB_WRITING);
    j->writing = RESULT_FOUND;
    if (j->send.list == MATCH_MESSAGES)
        message_status_first(r->d.redis, sid, status[0] ? status : "queued");
    if (idempotency_found(r->d.idem, j->key, sid, status, on_written, j)) {
        end(j, RESULT_FAILED);
        return;
    }
    r->in_redis++;
}

static void not_listed(struct job *j)
{
    struct resolver *r = j->r;
    int64_t catchup = (int64_t)r->d.cfg->resolve_catchup_s * 1000;
    int64_t wait = j->send.t1_ms + catchup - unix_ms();

    if (wait > 0) {
        int64_t again = catchup / 4;
        again = again < AGAIN_MIN_MS ? AGAIN_MIN_MS : again > AGAIN_MAX_MS ? AGAIN_MAX_MS : again;
        later(j, again < wait ? again : wait, RESULT_NOT_YET);
        return;
    }
    log_event(LOG_LEVEL_INFO, "outcome_resolved",
              json_pack("{s:s, s:s, s:i}", "key", j->key, "result", "absent", "catchup_s",
                        r->d.cfg->resolve_catchup_s));
    set_state(j, JOB_WRITING);
    j->writing = RESULT_ABSENT;
    if (idempotency_absent(r->d.idem, j->key, j->t0, on_written, j)) {
        end(j, RESULT_FAILED);
        return;
    }
    r->in_redis++;
}

static int list(struct job *j, const char *query);

static void on_page(const struct twilio_result *res, void *data)
{
    struct job *j = data;
    const char *sid = NULL, *status = NULL, *next = NULL;

    j->twilio = NULL;
    j->pages++;
    if (res->outcome != TWILIO_OK) {
        log_warn("resolve_failed",
                 "%s: Twilio's list could not be read (HTTP %ld, code %d%s%s); trying again",
                 j->key, res->http_status, res->code, res->http_status ? "" : ": ",
                 res->http_status ? "" : res->message); /* Twilio's own text is not logged */
        later(j, AGAIN_MAX_MS, RESULT_FAILED);
        return;
    }
    switch (match_page(&j->send, res->json, &sid, &status, &next)) {
    case MATCH_FOUND:
        found(j, sid, status);
        return;
    case MATCH_NEXT:
        if (j->pages < MAX_PAGES) {
            if (list(j, next))
                later(j, AGAIN_MAX_MS, RESULT_FAILED);
            return;
        }
        log_warn("resolve_too_many", "%s: not in the %d newest pages of Twilio's list; "
                 "looking again later", j->key, MAX_PAGES);
        later(j, AGAIN_MAX_MS, RESULT_NOT_YET);
        return;
    case MATCH_END:
        not_listed(j);
        return;
    case MATCH_BAD:
        break;
    }
    log_warn("resolve_failed", "%s: Twilio's answer is not a list page; trying again", j->key);
    later(j, AGAIN_MAX_MS, RESULT_FAILED);
}

static int list(struct job *j, const char *query)
{
    static const enum twilio_api apis[] = {TWILIO_API_MESSAGES_LIST, TWILIO_API_CALLS_LIST,
                                           TWILIO_API_VERIFY_ATTEMPTS_LIST};
    enum twilio_api api = apis[j->send.list];
    set_state(j, JOB_LISTING);
    return twilio_request(j->r->d.twilio, api, query, strlen(query), LIST_MS, on_page, j,
                          &j->twilio);
}

static void on_facts(const struct idempotency_facts *f, void *data)
{
    struct job *j = data;
    char query[1200];

    if (!back_from_redis(j))
        return;
    switch (f->state) {
    case IDEMPOTENCY_LOST:
        end(j, RESULT_FAILED); /* the lease brings it back */
        return;
    case IDEMPOTENCY_GONE:
    case IDEMPOTENCY_DONE:
    case IDEMPOTENCY_FOUND:
        resolve_queue_done(j->r->d.queue, j->key);
        end(j, RESULT_SETTLED);
        return;
    case IDEMPOTENCY_PENDING:
        if (f->lease_left_ms > 0) { /* its owner may still answer */
            later(j, f->lease_left_ms, RESULT_SETTLED);
            return;
        }
        break; /* its owner stopped before settling it */
    case IDEMPOTENCY_UNKNOWN:
        break;
    }
    if (!f->api[0] || match_send_parse(&j->send, f->api, f->form, f->t0, f->t1)) {
        log_warn("resolve_unresolvable", "%s: the record does not say what was sent", j->key);
        resolve_queue_done(j->r->d.queue, j->key);
        end(j, RESULT_UNRESOLVABLE);
        return;
    }
    j->have_send = 1;
    j->t0 = f->t0;
    if (j->send.list == MATCH_ATTEMPTS) /* the form does not name the service */
        snprintf(j->send.service, sizeof(j->send.service), "%s",
                 j->r->d.cfg->verify_service_sid);
    if (match_query(&j->send, query, sizeof(query)) || list(j, query)) {
        later(j, AGAIN_MAX_MS, RESULT_FAILED);
        return;
    }
}

static void job_start(struct resolver *r, const char *key)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j || (size_t)snprintf(j->key, sizeof(j->key), "%s", key) >= sizeof(j->key)) {
        free(j);
        return; /* the lease brings it back */
    }
    j->r = r;
    j->state = JOB_READING;
    j->next = r->jobs;
    if (r->jobs)
        r->jobs->prev = j;
    r->jobs = j;
    r->njobs++;
    if (idempotency_read(r->d.idem, key, on_facts, j)) {
        end(j, RESULT_FAILED);
        return;
    }
    r->in_redis++;
}

/* --- the sweep --- */

static void on_taken(const char *const *keys, int n, void *data)
{
    struct resolver *r = data;
    r->in_redis--;
    r->taking = 0;
    if (r->stopping) {
        maybe_free_resolver(r);
        return;
    }
    for (int i = 0; i < n; i++)
        job_start(r, keys[i]);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct resolver *r = arg;
    int room = MAX_JOBS - r->njobs;
    if (!r->taking && room > 0 &&
        resolve_queue_take(r->d.queue, room, LEASE_MS, on_taken, r) == CG_OK) {
        r->taking = 1;
        r->in_redis++;
    }
}

int resolver_new(const struct resolver_deps *deps, struct resolver **out)
{
    struct resolver *r = calloc(1, sizeof(*r));
    if (!r)
        return CG_ENOMEM;
    r->d = *deps;
    *out = r;
    return CG_OK;
}

int resolver_start(struct resolver *r)
{
    int ms = r->d.cfg->resolve_interval_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    LOOP_ASSERT_OWNER(r->d.base);
    r->timer = event_new(r->d.base, -1, EV_PERSIST, on_sweep, r);
    if (!r->timer || event_add(r->timer, &tv))
        return CG_ENOMEM;
    return CG_OK;
}

void resolver_free(struct resolver **rp)
{
    struct resolver *r = *rp;
    if (!r)
        return;
    if (r->timer) /* started: on the loop thread (else nothing ever ran) */
        LOOP_ASSERT_OWNER(r->d.base);
    *rp = NULL;
    if (r->timer)
        event_free(r->timer);
    r->stopping = 1;
    /* Listing jobs are cancelled; the others wait for their Redis reply
     * (redis_free gives it) and end there. */
    for (struct job *j = r->jobs, *next; j; j = next) {
        next = j->next;
        if (j->state == JOB_LISTING) {
            twilio_cancel(j->twilio);
            job_free(j);
        }
    }
    maybe_free_resolver(r);
}

void resolver_metrics(struct resolver *r, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP commsgate_resolutions_total Unknown outcomes looked up in "
                             "Twilio's lists, by result.\n"
                             "# TYPE commsgate_resolutions_total counter\n");
    for (int i = 0; i < RESULT_COUNT; i++)
        evbuffer_add_printf(out, "commsgate_resolutions_total{result=\"%s\"} %lu\n",
                            result_names[i], r->results[i]);
}
