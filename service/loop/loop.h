/* The event-loop thread: one libevent base that owns every Redis connection
 * and every outbound HTTP request, plus a mailbox other threads use to hand
 * it work. */
#ifndef COMMSGATE_LOOP_H
#define COMMSGATE_LOOP_H

#include <assert.h>

struct event_base;
struct loop_ctx;

/* Work for the loop thread. The poster owns the memory (usually embedded in a
 * per-call struct); `run` is called once, on the loop thread. */
struct loop_task {
    struct loop_task *next;
    void (*run)(struct loop_task *task);
};

/* Creates the base (with libevent's pthread locking on). */
int loop_new(struct loop_ctx **out);
struct event_base *loop_base(struct loop_ctx *loop);
/* Starts the thread; `name` shows in /proc and debuggers. */
int loop_start(struct loop_ctx *loop, const char *name);

/* Any thread. Tasks run in the order posted. The loop is woken only when the
 * mailbox was empty: one wake-up drains everything, as wake-ups coalesce. */
void loop_post(struct loop_ctx *loop, struct loop_task *task);
/* Any thread. Allocates the task; returns CG_ENOMEM (and fn is not called). */
int loop_call(struct loop_ctx *loop, void (*fn)(void *arg), void *arg);

/* Thread rules, asserted (LOOP_ASSERT_OWNER) at every loop-only entry
 * point in the Debug/sanitizer build: objects on a base are touched only
 * by the thread that runs it (the loop thread, or after loop_stop the
 * thread that stopped it). */
/* The calling thread drives `base` itself from now on (tests, tools). */
void loop_own_base(const struct event_base *base);
/* True on the thread that owns base's objects. */
int loop_owns(const struct event_base *base);
/* True on a thread that owns any base: never a completion-queue thread. */
int loop_in_any(void);
#define LOOP_ASSERT_OWNER(base) assert(loop_owns(base))
#define LOOP_ASSERT_NOT_LOOP() assert(!loop_in_any())

/* Any thread but the loop's: runs fn(arg) on the loop thread and returns
 * once it has run. CG_ENOMEM (fn not run), or CG_ESHUTDOWN when the loop is
 * not running. */
int loop_call_wait(struct loop_ctx *loop, void (*fn)(void *arg), void *arg);

/* True on the loop thread itself. */
int loop_on_thread(const struct loop_ctx *loop);

/* Any thread but the loop's. Tasks posted before this call still run, then
 * the loop exits and the thread is joined. */
void loop_stop(struct loop_ctx *loop);

/* After loop_stop (or if never started); clears *loop. NULL is a no-op. */
void loop_free(struct loop_ctx **loop);

#endif
