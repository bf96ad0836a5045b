/* The account budget, batched per loop turn. A take is queued and a flush
 * event made active; libevent runs that event after every callback already
 * due this turn, so the flush sees all the takes this turn started (a
 * mailbox drain of RPCs, or a burst of Redis replies) and sends them, with
 * the leases released meanwhile, in one account.lua call. It goes out in
 * the same write as those RPCs' own scripts, so it adds no round trip. */
#include "redis/account.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "loop/loop.h"
#include "redis/keys.h"
#include "redis/policy.h"
#include "redis/redis.h"

/* Requests (and released leases) per call: keeps each script run short
 * and its argument list within what Lua's unpack takes. */
#define BATCH_MAX 256
#define ID_MAX 48
#define NUM_MAX 24
/* Released leases wait this long for a take to carry them: at moderate
 * load, where each RPC is a loop turn of its own, a ZREM of their own per
 * RPC would be a third Redis command. Any take sends them first, so this
 * replica never waits on its own released places; other replicas see them
 * taken for at most this long. */
#define RELEASE_DELAY_MS 50


struct account_ctx {
    struct event_base *base; /* whose thread may use this */
    struct redis_ctx *redis;
    struct event *flush;
    int flush_armed;
    struct event *release_timer; /* pending: releases wait for a take, or for it */
    char rate[NUM_MAX], most[NUM_MAX];
    struct account_req *head, *tail; /* takes for the next batch, in order */
    char (*released)[ID_MAX];        /* leases to free with the next batch */
    size_t nreleased, released_cap;
};

/* One call in flight: its takes, in the order of the reply's triples. Owns
 * itself, so the context may go first. */
struct batch {
    struct account_req *head;
    size_t n;
};

static void fail_all(struct account_req *req, enum account_result res)
{
    while (req) {
        struct account_req *next = req->next; /* done may reuse req */
        req->next = NULL;
        req->done(req, res, 0);
        req = next;
    }
}

static void on_batch(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct batch *b = privdata;
    const redisReply *r = reply;
    struct account_req *req = b->head;

    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 * b->n) {
        int noscript = policy_is_noscript(r);
        if (r && !noscript)
            log_event(LOG_LEVEL_ERROR, "policy_script_error",
                      json_pack("{s:s, s:s}", "script", "account", "reply",
                                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply"));
        fail_all(req, noscript ? ACCOUNT_NOSCRIPT : ACCOUNT_LOST);
        free(b);
        return;
    }
    for (size_t i = 0; req; i++) {
        struct account_req *next = req->next;
        const redisReply *what = r->element[3 * i], *ms = r->element[3 * i + 1],
                         *slot = r->element[3 * i + 2];
        int64_t v = ms->type == REDIS_REPLY_INTEGER ? ms->integer : 0;
        enum account_result res = ACCOUNT_LOST;
        if (what->type == REDIS_REPLY_STRING || what->type == REDIS_REPLY_STATUS) {
            if (strcmp(what->str, "ok") == 0)
                res = ACCOUNT_OK;
            else if (strcmp(what->str, "rate") == 0)
                res = ACCOUNT_RATE;
            else if (strcmp(what->str, "concurrency") == 0)
                res = ACCOUNT_BUSY;
        }
        if (res != ACCOUNT_OK && v <= 0)
            v = 1;
        snprintf(req->slot, sizeof(req->slot), "%s",
                 res == ACCOUNT_OK && slot->type == REDIS_REPLY_STRING ? slot->str : "0");
        req->next = NULL;
        req->done(req, res, v);
        req = next;
    }
    free(b);
}

/* One call: up to BATCH_MAX takes from *list (advanced past them) and up
 * to BATCH_MAX of the released leases. */
static void send_batch(struct account_ctx *a, struct account_req **list)
{
    struct account_req *take = *list, *last = NULL;
    size_t ntake = 0, nrel = a->nreleased < BATCH_MAX ? a->nreleased : BATCH_MAX;
    char (*rel)[ID_MAX] = a->released + (a->nreleased - nrel);
    struct batch *b = NULL;
    int rc = CG_ENOMEM;

    for (struct account_req *q = take; q && ntake < BATCH_MAX; q = q->next, ntake++)
        last = q;
    if (ntake) {
        *list = last->next;
        last->next = NULL;
    }
    /* Releases not sent (Redis down, no memory) are dropped: those leases
     * expire on their own. */
    a->nreleased -= nrel;

    size_t argc = ntake ? 3 + 3 + 4 + nrel + 4 * ntake : 2 + nrel;
    const char **argv = malloc(argc * sizeof(*argv));
    char(*nums)[NUM_MAX] = malloc((1 + 3 * ntake) * sizeof(*nums));
    if (!argv || !nums)
        goto done;
    size_t k = 0;
    if (ntake) {
        k = 3; /* EVALSHA sha nkeys: policy_eval_argv fills them */
        argv[k++] = KEYS_ACCOUNT_TAT;
        argv[k++] = KEYS_ACCOUNT_LEASES;
        argv[k++] = KEYS_ACCOUNT_SPARE;
        argv[k++] = a->rate;
        argv[k++] = a->most;
        argv[k++] = "take";
        snprintf(nums[0], NUM_MAX, "%zu", nrel);
        argv[k++] = nums[0];
    } else {
        argv[k++] = "ZREM";
        argv[k++] = KEYS_ACCOUNT_LEASES;
    }
    /* The released leases go first, so the places they free count. */
    for (size_t i = 0; i < nrel; i++)
        argv[k++] = rel[i];
    size_t n = 1;
    for (struct account_req *q = ntake ? take : NULL; q; q = q->next) {
        argv[k++] = q->id;
        snprintf(nums[n], NUM_MAX, "%d", q->cost);
        argv[k++] = nums[n++];
        snprintf(nums[n], NUM_MAX, "%" PRId64, q->lease_ms);
        argv[k++] = nums[n++];
        snprintf(nums[n], NUM_MAX, "%" PRId64, q->max_wait_ms);
        argv[k++] = nums[n++];
    }
    if (!ntake) {
        rc = redis_command_argv(a->redis, redis_on_write, (void *)"account release", (int)k,
                                argv, NULL);
    } else if ((b = malloc(sizeof(*b)))) {
        b->head = take;
        b->n = ntake;
        rc = policy_eval_argv(a->redis, POLICY_ACCOUNT, 3, (int)k, argv, NULL, on_batch, b);
        if (rc)
            free(b);
    }
done:
    free(argv);
    free(nums);
    if (rc && ntake)
        fail_all(take, ACCOUNT_LOST);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct account_ctx *a = arg;
    /* Takes that done callbacks queue from here on go in the next turn. */
    struct account_req *list = a->head;
    a->head = a->tail = NULL;
    a->flush_armed = 0;
    evtimer_del(a->release_timer);
    while (list || a->nreleased)
        send_batch(a, &list);
}

static void arm(struct account_ctx *a)
{
    if (!a->flush_armed) {
        a->flush_armed = 1;
        event_active(a->flush, EV_TIMEOUT, 0);
    }
}

int account_new(struct event_base *base, struct redis_ctx *redis, int rate, int most,
                struct account_ctx **out)
{
    struct account_ctx *a = calloc(1, sizeof(*a));
    if (!a)
        return CG_ENOMEM;
    a->base = base;
    a->redis = redis;
    snprintf(a->rate, sizeof(a->rate), "%d", rate);
    snprintf(a->most, sizeof(a->most), "%d", most);
    a->flush = event_new(base, -1, 0, on_flush, a);
    a->release_timer = evtimer_new(base, on_flush, a);
    if (!a->flush || !a->release_timer) {
        if (a->flush)
            event_free(a->flush);
        free(a);
        return CG_ENOMEM;
    }
    *out = a;
    return CG_OK;
}

void account_take(struct account_ctx *a, struct account_req *req)
{
    LOOP_ASSERT_OWNER(a->base);
    req->next = NULL;
    if (a->tail)
        a->tail->next = req;
    else
        a->head = req;
    a->tail = req;
    arm(a);
}

void account_release(struct account_ctx *a, const char *id)
{
    assert(!a || loop_owns(a->base));
    if (!a)
        return; /* shutting down: it expires on its own */
    if (a->nreleased == a->released_cap) {
        size_t cap = a->released_cap ? 2 * a->released_cap : 64;
        void *p = realloc(a->released, cap * sizeof(*a->released));
        if (!p) {
            log_warn("redis_write_skipped", "lease %s not released: out of memory", id);
            return; /* it expires on its own */
        }
        a->released = p;
        a->released_cap = cap;
    }
    snprintf(a->released[a->nreleased++], ID_MAX, "%s", id);
    if (!a->flush_armed && !evtimer_pending(a->release_timer, NULL)) {
        struct timeval tv = {0, RELEASE_DELAY_MS * 1000};
        evtimer_add(a->release_timer, &tv);
    }
}

int account_give(struct account_ctx *a, const char *id, int cost, const char *slot)
{
    assert(!a || loop_owns(a->base));
    char c[NUM_MAX];
    if (!a)
        return CG_EREDIS;
    snprintf(c, sizeof(c), "%d", cost);
    const char *keys[] = {KEYS_ACCOUNT_TAT, KEYS_ACCOUNT_LEASES, KEYS_ACCOUNT_SPARE};
    const char *args[] = {a->rate, a->most, "give", id, c, slot};
    return policy_eval(a->redis, POLICY_ACCOUNT, 3, keys, 6, args, redis_on_write,
                       (void *)"account give");
}

void account_free(struct account_ctx **ap)
{
    struct account_ctx *a = *ap;
    if (!a)
        return;
    *ap = NULL;
    struct account_req *q = a->head;
    a->head = a->tail = NULL;
    event_free(a->flush);
    event_free(a->release_timer);
    free(a->released);
    free(a);
    fail_all(q, ACCOUNT_LOST);
}
