/* resolve_queue.lua's arguments and replies, and the batch of one loop
 * turn's adds and removals. */
#include "redis/resolve_queue.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "loop/loop.h"
#include "redis/keys.h"
#include "redis/policy.h"
#include "redis/redis.h"

/* At most this many keys per take: the reply is read into a stack array. */
#define TAKE_MAX 64
/* Entries per script call; a longer batch goes in several. */
#define BATCH_MAX 256

enum kind { KIND_SET, KIND_NX, KIND_DONE };
static const char *const kind_names[] = {"set", "nx", "done"};

struct op {
    enum kind kind;
    char delay[24];
    char key[KEYS_MAX];
};

struct resolve_queue {
    struct event_base *base;
    struct redis_ctx *redis;
    const struct config *cfg;
    struct event *flush; /* zero timer: the end of this loop turn */
    struct op *ops;
    size_t nops, cap;
};

static void send_batch(struct resolve_queue *q)
{
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", q->cfg->idempotency_ttl_s);
    for (size_t at = 0; at < q->nops; at += BATCH_MAX) {
        size_t n = q->nops - at < BATCH_MAX ? q->nops - at : BATCH_MAX;
        const char **argv = malloc((6 + 3 * n) * sizeof(*argv));
        if (!argv) {
            log_warn("redis_write_skipped", "%zu resolve queue entries: out of memory", n);
            continue;
        }
        size_t k = 3; /* EVALSHA sha nkeys: policy_eval_argv fills them */
        argv[k++] = KEYS_RESOLVE_QUEUE;
        argv[k++] = "batch";
        argv[k++] = ttl;
        for (size_t i = at; i < at + n; i++) {
            argv[k++] = kind_names[q->ops[i].kind];
            argv[k++] = q->ops[i].key;
            argv[k++] = q->ops[i].delay;
        }
        /* Lost (Redis down): a repeat of the key queues it again, and a
         * removal lost finds its record settled when it falls due. */
        if (policy_eval_argv(q->redis, POLICY_RESOLVE_QUEUE, 1, (int)k, argv, NULL,
                             redis_on_write, (void *)"resolve queue"))
            log_warn("redis_write_skipped", "%zu resolve queue entries: Redis down", n);
        free(argv);
    }
    q->nops = 0;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    send_batch(arg);
}

int resolve_queue_new(struct event_base *base, struct redis_ctx *r, const struct config *cfg,
                      struct resolve_queue **out)
{
    struct resolve_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return CG_ENOMEM;
    q->base = base;
    q->redis = r;
    q->cfg = cfg;
    q->flush = evtimer_new(base, on_flush, q);
    if (!q->flush) {
        free(q);
        return CG_ENOMEM;
    }
    *out = q;
    return CG_OK;
}

void resolve_queue_free(struct resolve_queue **qp)
{
    struct resolve_queue *q = *qp;
    if (!q)
        return;
    if (q->nops)
        send_batch(q);
    event_free(q->flush);
    free(q->ops);
    free(q);
    *qp = NULL;
}

static void push(struct resolve_queue *q, enum kind kind, const char *key, int64_t in_ms)
{
    LOOP_ASSERT_OWNER(q->base);
    if (q->nops == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 64;
        struct op *ops = realloc(q->ops, cap * sizeof(*ops));
        if (!ops) {
            log_warn("redis_write_skipped", "resolve queue entry %s: out of memory", key);
            return;
        }
        q->ops = ops;
        q->cap = cap;
    }
    struct op *o = &q->ops[q->nops];
    if ((size_t)snprintf(o->key, sizeof(o->key), "%s", key) >= sizeof(o->key))
        return;
    o->kind = kind;
    snprintf(o->delay, sizeof(o->delay), "%lld", (long long)(in_ms < 0 ? 0 : in_ms));
    if (q->nops++ == 0) {
        struct timeval zero = {0, 0};
        evtimer_add(q->flush, &zero);
    }
}

void resolve_queue_add(struct resolve_queue *q, const char *key, int64_t in_ms,
                       int keep_earlier)
{
    push(q, keep_earlier ? KIND_NX : KIND_SET, key, in_ms);
}

void resolve_queue_done(struct resolve_queue *q, const char *key)
{
    push(q, KIND_DONE, key, 0);
}

struct take {
    resolve_queue_taken_fn *fn;
    void *data;
};

static void on_taken(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct take t = *(struct take *)privdata;
    const redisReply *rep = reply;
    const char *keys[TAKE_MAX];
    int n = 0;

    free(privdata);
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        /* NOSCRIPT included: redis.c loads the scripts on every connect,
         * and the next sweep runs again. */
        t.fn(NULL, -1, t.data);
        return;
    }
    for (size_t i = 0; i < rep->elements && n < TAKE_MAX; i++)
        if (rep->element[i]->type == REDIS_REPLY_STRING)
            keys[n++] = rep->element[i]->str;
    t.fn(keys, n, t.data);
}

int resolve_queue_take(struct resolve_queue *q, int max, int64_t lease_ms,
                       resolve_queue_taken_fn *fn, void *data)
{
    char n[12], lease[24];
    struct take *t = malloc(sizeof(*t));
    if (!t)
        return CG_ENOMEM;
    t->fn = fn;
    t->data = data;
    if (q->nops) /* what this turn queued counts for the take */
        send_batch(q);
    snprintf(n, sizeof(n), "%d", max > TAKE_MAX ? TAKE_MAX : max < 1 ? 1 : max);
    snprintf(lease, sizeof(lease), "%lld", (long long)lease_ms);
    const char *keys[] = {KEYS_RESOLVE_QUEUE};
    const char *args[] = {"take", n, lease};
    int rc = policy_eval(q->redis, POLICY_RESOLVE_QUEUE, 1, keys, 3, args, on_taken, t);
    if (rc)
        free(t);
    return rc;
}
