/* A redis.c connection with the policy scripts loaded, for the tests of
 * the modules that run them. */
#ifndef COMMSGATE_TEST_POLICY_REDIS_H
#define COMMSGATE_TEST_POLICY_REDIS_H

struct event_base;
struct redis_ctx;

/* Connects to the redis-server on 127.0.0.1:port and runs base until it
 * is up (cmocka-fails otherwise). *up follows its health from then on. */
struct redis_ctx *test_policy_redis_open(struct event_base *base, int port, int *up);

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
