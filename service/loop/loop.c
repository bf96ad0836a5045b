/* libevent loop on its own thread, fed through a mutex-guarded intrusive
 * list (the h2o multithread / libuv uv_async pattern). */
#include "loop/loop.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/log.h"

struct loop_ctx {
    struct event_base *base;
    struct event *wake;
    pthread_t thread;
    int started;

    pthread_mutex_t lock;
    struct loop_task *head, *tail;
    int stopping;
};

struct call_task {
    struct loop_task task;
    void (*fn)(void *arg);
    void *arg;
};

/* The base whose objects this thread may touch: the loop thread's own, or
 * one a thread drives itself (loop_own_base). */
static _Thread_local const struct event_base *owned_base;

static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;

static void evthread_setup(void)
{
    evthread_use_pthreads();
}

static void drain(evutil_socket_t fd, short what, void *arg)
{
    struct loop_ctx *loop = arg;
    struct loop_task *t;
    int stop;

    pthread_mutex_lock(&loop->lock);
    t = loop->head;
    loop->head = loop->tail = NULL;
    stop = loop->stopping;
    pthread_mutex_unlock(&loop->lock);

    while (t) {
        struct loop_task *next = t->next; /* run() may free t */
        t->run(t);
        t = next;
    }
    if (stop)
        event_base_loopbreak(loop->base);
}

int loop_new(struct loop_ctx **out)
{
    struct loop_ctx *loop;

    pthread_once(&evthread_once, evthread_setup);
    loop = calloc(1, sizeof(*loop));
    if (!loop)
        return CG_ENOMEM;
    pthread_mutex_init(&loop->lock, NULL);
    loop->base = event_base_new();
    if (!loop->base)
        goto fail;
    loop->wake = event_new(loop->base, -1, 0, drain, loop);
    if (!loop->wake)
        goto fail;
    *out = loop;
    return CG_OK;
fail:
    loop_free(&loop);
    return CG_ENOMEM;
}

struct event_base *loop_base(struct loop_ctx *loop)
{
    return loop->base;
}

static void *loop_main(void *arg)
{
    struct loop_ctx *loop = arg;
    owned_base = loop->base;
    event_base_loop(loop->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

int loop_start(struct loop_ctx *loop, const char *name)
{
    if (pthread_create(&loop->thread, NULL, loop_main, loop))
        return CG_ESYS;
    pthread_setname_np(loop->thread, name);
    loop->started = 1;
    return CG_OK;
}

/* Called with the lock held; returns whether the loop must be woken. */
static int enqueue(struct loop_ctx *loop, struct loop_task *task)
{
    int was_empty = loop->head == NULL;
    task->next = NULL;
    if (loop->tail)
        loop->tail->next = task;
    else
        loop->head = task;
    loop->tail = task;
    return was_empty;
}

void loop_post(struct loop_ctx *loop, struct loop_task *task)
{
    pthread_mutex_lock(&loop->lock);
    int wake = enqueue(loop, task);
    pthread_mutex_unlock(&loop->lock);
    if (wake)
        event_active(loop->wake, 0, 0);
}

static void run_call(struct loop_task *task)
{
    struct call_task *c = (struct call_task *)task;
    c->fn(c->arg);
    free(c);
}

int loop_call(struct loop_ctx *loop, void (*fn)(void *arg), void *arg)
{
    struct call_task *c = malloc(sizeof(*c));
    if (!c)
        return CG_ENOMEM;
    c->task.run = run_call;
    c->fn = fn;
    c->arg = arg;
    loop_post(loop, &c->task);
    return CG_OK;
}

struct call_wait {
    void (*fn)(void *arg);
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done;
};

static void run_and_signal(void *arg)
{
    struct call_wait *w = arg;
    w->fn(w->arg);
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

int loop_call_wait(struct loop_ctx *loop, void (*fn)(void *arg), void *arg)
{
    struct call_wait w = {.fn = fn, .arg = arg};
    int rc;

    assert(!loop_on_thread(loop));
    if (!loop->started)
        return CG_ESHUTDOWN;
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cond, NULL);
    rc = loop_call(loop, run_and_signal, &w);
    if (!rc) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cond, &w.mu);
        pthread_mutex_unlock(&w.mu);
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.mu);
    return rc;
}

int loop_on_thread(const struct loop_ctx *loop)
{
    return loop->started && pthread_equal(pthread_self(), loop->thread);
}

void loop_stop(struct loop_ctx *loop)
{
    if (!loop->started)
        return;
    pthread_mutex_lock(&loop->lock);
    loop->stopping = 1;
    pthread_mutex_unlock(&loop->lock);
    event_active(loop->wake, 0, 0);
    pthread_join(loop->thread, NULL);
    loop->started = 0;
    owned_base = loop->base; /* what the loop owned is the caller's to free */
}

void loop_own_base(const struct event_base *base)
{
    owned_base = base;
}

int loop_owns(const struct event_base *base)
{
    return base && owned_base == base;
}

int loop_in_any(void)
{
    return owned_base != NULL;
}

void loop_free(struct loop_ctx **loopp)
{
    struct loop_ctx *loop = *loopp;
    if (!loop)
        return;
    if (loop->head)
        log_warn("loop_free", "tasks left in the mailbox at exit");
    if (loop->wake)
        event_free(loop->wake);
    if (owned_base == loop->base)
        owned_base = NULL; /* a later base may get its address */
    if (loop->base)
        event_base_free(loop->base);
    pthread_mutex_destroy(&loop->lock);
    free(loop);
    *loopp = NULL;
}
