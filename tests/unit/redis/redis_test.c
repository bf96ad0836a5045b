/* redis.c against a real redis-server on a free loopback port: health goes
 * up, down when the server stops or hangs, up again when it returns; wrong
 * credentials never count as up; commands fail fast while down. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loop/loop.h"
#include "core/error.h"
#include "redis/redis.h"
#include "support/redis_server.h"

struct fixture {
    struct event_base *base;
    struct redis_ctx *r;
    struct config_redis server;
    int up, changes;
    int replies, null_replies;
};

static void on_health(int up, void *data)
{
    struct fixture *f = data;
    f->up = up;
    f->changes++;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct fixture *f = privdata;
    if (reply)
        f->replies++;
    else
        f->null_replies++;
}

static long run_until(struct fixture *f, int *flag, int want, int ms)
{
    return test_run_until(f->base, flag, want, ms);
}

/* nprio: event priorities on the base (0: libevent's default, one). */
static void open_fixture_at(struct fixture *f, const char *host, int port, const char *password,
                            int nprio)
{
    memset(f, 0, sizeof(*f));
    f->base = event_base_new();
    if (nprio)
        assert_int_equal(event_base_priority_init(f->base, nprio), 0);
    loop_own_base(f->base); /* this test drives the base itself */
    strcpy(f->server.host, host);
    f->server.port = port;
    if (password)
        strcpy(f->server.password, password);
    struct redis_opts o = {.server = &f->server, .ping_interval_ms = 100, .timeout_ms = 300,
                           .on_health = on_health, .health_data = f};
    assert_int_equal(redis_new(f->base, &o, &f->r), CG_OK);
    assert_int_equal(redis_start(f->r), CG_OK);
}

static void open_fixture(struct fixture *f, int port, const char *password)
{
    open_fixture_at(f, "127.0.0.1", port, password, 0);
}

static void close_fixture(struct fixture *f)
{
    redis_free(&f->r);
    assert_null(f->r);
    event_base_free(f->base);
}

static void test_up_down_up(void **state)
{
    struct fixture f;
    int port = test_free_port();
    pid_t pid = test_redis_start(port, NULL);
    open_fixture(&f, port, NULL);

    run_until(&f, &f.up, 1, 5000);
    assert_int_equal(f.up, 1);
    assert_true(redis_is_up(f.r));

    const char *argv[] = {"SET", "k", "v"};
    assert_int_equal(redis_command_argv(f.r, on_reply, &f, 3, argv, NULL), CG_OK);
    run_until(&f, &f.replies, 1, 2000);
    assert_int_equal(f.replies, 1);

    test_redis_stop(pid);
    long took = run_until(&f, &f.up, 0, 5000);
    assert_int_equal(f.up, 0);
    assert_true(took < 2000);
    /* Down: refused at once, and the callback is never called. */
    assert_int_equal(redis_command_argv(f.r, on_reply, &f, 3, argv, NULL), CG_EREDIS);

    pid = test_redis_start(port, NULL);
    run_until(&f, &f.up, 1, 5000);
    assert_int_equal(f.up, 1);
    assert_int_equal(f.replies, 1);
    assert_int_equal(f.null_replies, 0);
    close_fixture(&f);
    test_redis_stop(pid);
}

static void test_hung_server_is_dropped(void **state)
{
    struct fixture f;
    int port = test_free_port();
    pid_t pid = test_redis_start(port, NULL);
    open_fixture(&f, port, NULL);
    run_until(&f, &f.up, 1, 5000);
    assert_int_equal(f.up, 1);

    kill(pid, SIGSTOP); /* accepts nothing, answers nothing, closes nothing */
    const char *argv[] = {"GET", "k"};
    assert_int_equal(redis_command_argv(f.r, on_reply, &f, 2, argv, NULL), CG_OK);
    long took = run_until(&f, &f.up, 0, 5000);
    assert_int_equal(f.up, 0);
    assert_true(took < 2000);
    /* The pending command was failed, not left hanging. */
    assert_int_equal(f.null_replies, 1);
    kill(pid, SIGCONT);
    run_until(&f, &f.up, 1, 5000);
    assert_int_equal(f.up, 1);
    close_fixture(&f);
    test_redis_stop(pid);
}

/* A burst queues about 2 s of work ahead of the PING, far more than the
 * 300 ms timeout, while Redis answers a command every 60 ms or so: busy,
 * not hung, so nothing may be dropped. Each command carries a 40 KB
 * argument because Redis reads a client's socket in bounded chunks and
 * writes replies between them: small commands would all be read, and run,
 * in one go, and then Redis really would be silent for the whole burst. */
#define BUSY_SCRIPTS 30
#define BUSY_PAD (40 * 1024)
#define BUSY_SCRIPT                                                                  \
    "local t = redis.call('TIME') local stop = t[1] * 1000000 + t[2] + 60000 "       \
    "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop return 1"

static void test_busy_server_is_kept(void **state)
{
    struct fixture f;
    int port = test_free_port();
    pid_t pid = test_redis_start(port, NULL);
    open_fixture(&f, port, NULL);
    run_until(&f, &f.up, 1, 5000);
    assert_int_equal(f.up, 1);

    char *pad = malloc(BUSY_PAD);
    assert_non_null(pad);
    memset(pad, 'x', BUSY_PAD);
    const char *argv[] = {"EVAL", BUSY_SCRIPT, "0", pad};
    size_t lens[] = {4, strlen(BUSY_SCRIPT), 1, BUSY_PAD};
    for (int i = 0; i < BUSY_SCRIPTS; i++)
        assert_int_equal(redis_command_argv(f.r, on_reply, &f, 4, argv, lens), CG_OK);
    free(pad);
    long took = run_until(&f, &f.replies, BUSY_SCRIPTS, 10000);
    assert_int_equal(f.replies, BUSY_SCRIPTS);
    assert_true(took >= 1000); /* Redis really was behind, well past the timeout */
    assert_int_equal(f.null_replies, 0);
    assert_int_equal(f.up, 1);
    assert_int_equal(f.changes, 1); /* never went down */
    close_fixture(&f);
    test_redis_stop(pid);
}

static pid_t blocked_pid;

/* Stands for a burst of work in one loop turn: Redis answers meanwhile,
 * but its read event cannot run before the next turn. */
static void on_blocker(evutil_socket_t fd, short what, void *arg)
{
    kill(blocked_pid, SIGCONT); /* Redis answers the PING now */
    usleep(700 * 1000);         /* past the 300 ms timeout */
}

static void test_busy_loop_keeps_a_healthy_connection(void **state)
{
    struct fixture f;
    int port = test_free_port();
    pid_t pid = test_redis_start(port, NULL);

    /* Two priorities: the blocker ahead of redis.c's tick in one turn. */
    open_fixture_at(&f, "127.0.0.1", port, NULL, 2);
    run_until(&f, &f.up, 1, 5000);
    assert_int_equal(f.up, 1);

    /* A PING outstanding and unanswered (Redis paused), then the loop late
     * past both the next tick and the blocker: one turn runs them both,
     * the blocker first, with no read event raised before it. */
    kill(pid, SIGSTOP);
    run_until(&f, &f.changes, 99, 250); /* ticks: a PING goes out */
    blocked_pid = pid;
    struct event *blocker = evtimer_new(f.base, on_blocker, NULL);
    event_priority_set(blocker, 0);
    struct timeval soon = {0, 1000};
    evtimer_add(blocker, &soon);
    usleep(400 * 1000);
    event_base_loop(f.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    run_until(&f, &f.changes, 99, 500);
    assert_int_equal(f.up, 1);
    assert_int_equal(f.changes, 1); /* never dropped */
    event_free(blocker);
    close_fixture(&f);
    test_redis_stop(pid);
}

static void test_password(void **state)
{
    struct fixture f;
    int port = test_free_port();
    pid_t pid = test_redis_start(port, "right-pass");

    open_fixture(&f, port, "wrong-pass");
    run_until(&f, &f.changes, 1, 1500);
    assert_int_equal(f.up, 0);
    close_fixture(&f);

    open_fixture(&f, port, "right-pass");
    run_until(&f, &f.up, 1, 5000);
    assert_int_equal(f.up, 1);
    close_fixture(&f);
    test_redis_stop(pid);
}

static void test_free_fails_pending(void **state)
{
    struct fixture f;
    int port = test_free_port();
    pid_t pid = test_redis_start(port, NULL);
    open_fixture(&f, port, NULL);
    run_until(&f, &f.up, 1, 5000);
    const char *argv[] = {"PING"};
    for (int i = 0; i < 10; i++)
        assert_int_equal(redis_command_argv(f.r, on_reply, &f, 1, argv, NULL), CG_OK);
    close_fixture(&f); /* before any reply was read */
    assert_int_equal(f.replies + f.null_replies, 10);
    assert_int_equal(f.null_replies, 10);
    test_redis_stop(pid);
}

struct waiter {
    struct redis_waiter w;
    struct fixture *f;
    int calls, ok, replies_then;
};

static void on_waited(struct redis_waiter *rw, int ok)
{
    struct waiter *w = (struct waiter *)rw;
    w->calls++;
    w->ok = ok;
    w->replies_then = w->f->replies;
}

/* redis_after_writes: a waiter hears only after every command sent before
 * it was answered; the waiters of one turn share the wait; none is told
 * from inside the call; a lost or freed connection tells them, not ok. */
static void test_after_writes(void **state)
{
    struct fixture f;
    struct waiter a = {.w.done = on_waited, .f = &f}, b = a, c = a, d = a;
    int done = 0;
    int port = test_free_port();
    pid_t pid = test_redis_start(port, NULL);
    open_fixture(&f, port, NULL);
    run_until(&f, &f.up, 1, 5000);
    const char *incr[] = {"INCR", "cg:{t}:n"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(redis_command_argv(f.r, on_reply, &f, 2, incr, NULL), CG_OK);
    redis_after_writes(f.r, &a.w);
    redis_after_writes(f.r, &b.w);
    assert_int_equal(a.calls + b.calls, 0);
    while (a.calls + b.calls < 2 && done++ < 1000)
        event_base_loop(f.base, EVLOOP_ONCE);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_true(a.ok && b.ok);
    assert_int_equal(a.replies_then, 3); /* the writes' replies came first */
    assert_int_equal(b.replies_then, 3);

    redis_after_writes(f.r, &c.w); /* never sent: freed first */
    close_fixture(&f);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.ok, 0);

    /* Redis gone: told at the end of the turn, not ok. */
    test_redis_stop(pid);
    open_fixture(&f, port, NULL);
    redis_after_writes(f.r, &d.w);
    assert_int_equal(d.calls, 0);
    event_base_loop(f.base, EVLOOP_ONCE);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.ok, 0);
    close_fixture(&f);
}

static long wait_calls(int port)
{
    char cmd[96], line[256];
    long calls = 0;
    snprintf(cmd, sizeof(cmd), "redis-cli -p %d INFO commandstats", port);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line, sizeof(line), p))
        if (strncmp(line, "cmdstat_wait:calls=", 19) == 0)
            calls = atol(line + 19);
    pclose(p);
    return calls;
}

/* With wait_replicas, one WAIT is out at a time: Redis runs nothing else of
 * the connection's while it waits, so a WAIT per turn would queue up, each
 * as long as its timeout when no replica answers. Ten turns' waiters, on a
 * Redis without replicas, share two WAITs, and all are told not ok. */
static void test_waits_are_not_queued(void **state)
{
    struct fixture f;
    struct waiter w[10];
    int port = test_free_port();
    pid_t pid = test_redis_start(port, NULL);
    open_fixture(&f, port, NULL);
    redis_free(&f.r);
    struct redis_opts o = {.server = &f.server, .ping_interval_ms = 100, .timeout_ms = 1000,
                           .wait_replicas = 1, .wait_timeout_ms = 100,
                           .on_health = on_health, .health_data = &f};
    assert_int_equal(redis_new(f.base, &o, &f.r), CG_OK);
    assert_int_equal(redis_start(f.r), CG_OK);
    f.up = 0;
    run_until(&f, &f.up, 1, 5000);
    long before = wait_calls(port);
    int told = 0;
    for (int i = 0; i < 10; i++) {
        w[i] = (struct waiter){.w.done = on_waited, .f = &f};
        redis_after_writes(f.r, &w[i].w);
        event_base_loop(f.base, EVLOOP_NONBLOCK); /* one turn each */
    }
    for (int n = 0; n < 5000 && told < 10; n++) {
        event_base_loop(f.base, EVLOOP_ONCE);
        told = 0;
        for (int i = 0; i < 10; i++)
            told += w[i].calls;
    }
    for (int i = 0; i < 10; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].ok, 0); /* no replica has the writes */
    }
    assert_int_equal(wait_calls(port) - before, 2);
    close_fixture(&f);
    test_redis_stop(pid);
}

/* A command failed by redis_free whose callback, as a record module's does,
 * sends again and waits for the writes: refused, and told, while the
 * connection is going (it once reached a freed barrier event). */
static struct waiter late_waiter;
static int late_sent = -1;

static void on_reply_then_more(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct fixture *f = privdata;
    const char *argv[] = {"PING"};
    on_reply(ac, reply, privdata);
    late_sent = redis_command_argv(f->r, on_reply, f, 1, argv, NULL);
    late_waiter.w.done = on_waited;
    late_waiter.f = f;
    redis_after_writes(f->r, &late_waiter.w);
}

static void test_free_with_callbacks_that_send(void **state)
{
    (void)state;
    struct fixture f;
    int port = test_free_port();
    pid_t pid = test_redis_start(port, NULL);
    open_fixture(&f, port, NULL);
    run_until(&f, &f.up, 1, 5000);
    const char *argv[] = {"PING"};
    assert_int_equal(redis_command_argv(f.r, on_reply_then_more, &f, 1, argv, NULL), CG_OK);
    redis_free(&f.r); /* f.r is still set while its callbacks run */
    assert_int_equal(f.null_replies, 1);
    assert_int_equal(late_sent, CG_EREDIS);
    assert_int_equal(late_waiter.calls, 1);
    assert_int_equal(late_waiter.ok, 0);
    event_base_free(f.base);
    test_redis_stop(pid);
}

/* A host name is looked up off the loop, not by getaddrinfo inline
 * (docker-compose's REDIS_URL is redis://redis:6379). */
static void test_hostname_is_resolved(void **state)
{
    struct fixture f;
    int port = test_free_port();
    pid_t pid = test_redis_start(port, NULL);
    open_fixture_at(&f, "localhost", port, NULL, 0);
    run_until(&f, &f.up, 1, 5000);
    assert_int_equal(f.up, 1);
    close_fixture(&f);
    test_redis_stop(pid);
}

/* A connection freed while its name is still being looked up: the lookup's
 * thread finishes on its own and touches nothing of the freed base (ASan
 * and TSan watch it). */
static void test_free_while_resolving(void **state)
{
    (void)state;
    for (int i = 0; i < 20; i++) {
        struct fixture f;
        open_fixture_at(&f, "localhost", 1, NULL, 0);
        close_fixture(&f);
    }
    usleep(200 * 1000); /* the lookups end after their dials were let go of */
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* As loop_new does: a name's lookup wakes the base from its thread. */
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_up_down_up),
        cmocka_unit_test(test_hung_server_is_dropped),
        cmocka_unit_test(test_busy_server_is_kept),
        cmocka_unit_test(test_busy_loop_keeps_a_healthy_connection),
        cmocka_unit_test(test_password),
        cmocka_unit_test(test_free_fails_pending),
        cmocka_unit_test(test_after_writes),
        cmocka_unit_test(test_waits_are_not_queued),
        cmocka_unit_test(test_hostname_is_resolved),
        cmocka_unit_test(test_free_while_resolving),
        cmocka_unit_test(test_free_with_callbacks_that_send),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
