/* A real redis-server for unit tests, on a free loopback port, and a way to
 * drive an event_base until a condition holds. */
#ifndef COMMSGATE_TEST_REDIS_SERVER_H
#define COMMSGATE_TEST_REDIS_SERVER_H

#include <sys/types.h>

struct event_base;

int test_free_port(void);
/* Starts redis-server on 127.0.0.1:port (with --requirepass if password is
 * non-NULL) and returns its pid once it accepts connections. */
pid_t test_redis_start(int port, const char *password);
void test_redis_stop(pid_t pid);

/* Milliseconds on the monotonic clock. */
long long test_now_ms(void);

/* Runs base until *flag == want or ms pass; returns the ms it took. */
long test_run_until(struct event_base *base, const int *flag, int want, int ms);

#endif
