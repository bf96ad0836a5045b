/* loop.c: tasks from many threads all run, on the loop thread, in each
 * poster's order; tasks posted before loop_stop still run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/error.h"
#include "loop/loop.h"

#define POSTERS 4
#define PER_POSTER 20000

struct item {
    struct loop_task task;
    int poster, seq;
};

static struct loop_ctx *loop;
static int last_seq[POSTERS];
static int ran, wrong_thread, out_of_order;

static void run_item(struct loop_task *t)
{
    struct item *it = (struct item *)t;
    if (!loop_on_thread(loop))
        wrong_thread++;
    if (it->seq != last_seq[it->poster] + 1)
        out_of_order++;
    last_seq[it->poster] = it->seq;
    ran++;
    free(it);
}

static void *poster(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 1; i <= PER_POSTER; i++) {
        struct item *it = malloc(sizeof(*it));
        it->task.run = run_item;
        it->poster = id;
        it->seq = i;
        loop_post(loop, &it->task);
    }
    return NULL;
}

static void test_many_posters(void **state)
{
    pthread_t th[POSTERS];
    assert_int_equal(loop_new(&loop), CG_OK);
    assert_int_equal(loop_start(loop, "test-loop"), CG_OK);
    assert_false(loop_on_thread(loop));
    for (int i = 0; i < POSTERS; i++)
        pthread_create(&th[i], NULL, poster, (void *)(intptr_t)i);
    for (int i = 0; i < POSTERS; i++)
        pthread_join(th[i], NULL);
    loop_stop(loop); /* everything posted above must still run */
    assert_int_equal(ran, POSTERS * PER_POSTER);
    assert_int_equal(wrong_thread, 0);
    assert_int_equal(out_of_order, 0);
    loop_free(&loop);
    assert_null(loop);
}

static int called;

static void bump(void *arg)
{
    called += *(int *)arg;
}

static void test_loop_call_and_free_null(void **state)
{
    int three = 3;
    assert_int_equal(loop_new(&loop), CG_OK);
    assert_int_equal(loop_start(loop, "test-loop"), CG_OK);
    assert_int_equal(loop_call(loop, bump, &three), CG_OK);
    assert_int_equal(loop_call(loop, bump, &three), CG_OK);
    loop_stop(loop);
    assert_int_equal(called, 6);
    loop_free(&loop);
    loop_free(&loop); /* NULL: no-op */
}

static int owned_there = -1, any_there = -1;

static void check_owner(void *arg)
{
    owned_there = loop_owns(loop_base(loop));
    any_there = loop_in_any();
}

static void *other_thread(void *arg)
{
    *(int *)arg = loop_owns(loop_base(loop)) || loop_in_any();
    return NULL;
}

/* The thread rule LOOP_ASSERT_OWNER checks: a base's objects belong to the
 * thread that runs it, then to the thread that stopped it. */
static void test_thread_ownership(void **state)
{
    pthread_t t;
    int elsewhere = -1;

    assert_int_equal(loop_new(&loop), CG_OK);
    assert_false(loop_owns(loop_base(loop)));
    assert_false(loop_owns(NULL));
    assert_int_equal(loop_start(loop, "test-loop"), CG_OK);
    assert_int_equal(loop_call(loop, check_owner, NULL), CG_OK);
    assert_int_equal(pthread_create(&t, NULL, other_thread, &elsewhere), 0);
    pthread_join(t, NULL);
    assert_false(loop_owns(loop_base(loop))); /* the test thread, while it runs */
    loop_stop(loop);
    assert_int_equal(owned_there, 1);
    assert_int_equal(any_there, 1);
    assert_int_equal(elsewhere, 0);        /* a queue thread owns nothing */
    assert_true(loop_owns(loop_base(loop))); /* stopped: the stopper frees */
    loop_own_base(NULL);
    assert_false(loop_in_any());
    loop_free(&loop);
}

static void slow_mark(void *arg)
{
    usleep(50 * 1000);
    *(int *)arg = loop_owns(loop_base(loop)) ? 1 : -1;
}

/* loop_call_wait returns only once fn ran, and ran on the loop thread. */
static void test_call_wait(void **state)
{
    int mark = 0;
    assert_int_equal(loop_new(&loop), CG_OK);
    assert_int_equal(loop_call_wait(loop, slow_mark, &mark), CG_ESHUTDOWN); /* not running */
    assert_int_equal(mark, 0);
    assert_int_equal(loop_start(loop, "test-loop"), CG_OK);
    assert_int_equal(loop_call_wait(loop, slow_mark, &mark), CG_OK);
    assert_int_equal(mark, 1);
    loop_stop(loop);
    loop_free(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_wait),
        cmocka_unit_test(test_thread_ownership),
        cmocka_unit_test(test_many_posters),
        cmocka_unit_test(test_loop_call_and_free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
