/* A redis.c connection with the policy scripts loaded, for the tests of
 * the modules that run them. */
#ifndef COMMSGATE_TEST_POLICY_REDIS_H
#define COMMSGATE_TEST_POLICY_REDIS_H

struct event_base;
struct redis_ctx;

/* Connects to the redis-server on 127.0.0.1:port and runs base until it
 * is up (cmocka-fails otherwise). *up follows its health from then on. */
struct redis_ctx *test_policy_redis_open(struct event_base *base, int port, int *up);

/* The fixture of the record modules' tests: a redis-server on a free port,
 * an event base this thread drives (`base`, or a new one when NULL), and a
 * connection with the scripts loaded. */
#include <sys/types.h>

struct test_redis {
    int port, up;
    pid_t pid;
    struct event_base *base;
    int own_base;
    struct redis_ctx *r;
};
void test_redis_open(struct test_redis *t, struct event_base *base);
void test_redis_close(struct test_redis *t);
/* Runs one command (up to four words, NULL after the last) and returns its
 * reply as text (an integer printed, a string, or ""); valid until the next
 * call. */
const char *test_redis_cmd(struct test_redis *t, const char *a0, const char *a1, const char *a2,
                           const char *a3);

/* A decision script's answer, for the record modules' tests: arm it with
 * test_decision_arm, start the module's call with &d->req, then
 * test_decision_wait runs base until it is in (cmocka-fails after 3 s).
 * A repeat's stored answer is kept in d->res.repeat until the next arm. */
#include "redis/policy.h"

struct test_decision {
    struct policy_req req;
    struct policy_result res;
    int done;
};
struct policy_req *test_decision_arm(struct test_decision *d);
void test_decision_wait(struct event_base *base, struct test_decision *d);

#endif
