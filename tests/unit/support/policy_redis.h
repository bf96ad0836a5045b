/* A redis.c connection with the policy scripts loaded, for the tests of
 * the modules that run them. */
#ifndef COMMSGATE_TEST_POLICY_REDIS_H
#define COMMSGATE_TEST_POLICY_REDIS_H

struct event_base;
struct redis_ctx;

/* Connects to the redis-server on 127.0.0.1:port and runs base until it
 * is up (cmocka-fails otherwise). *up follows its health from then on. */
struct redis_ctx *test_policy_redis_open(struct event_base *base, int port, int *up);

#endif
