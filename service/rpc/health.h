/* grpc.health.v1.Health: SERVING while Redis answers every worker, NOT_SERVING otherwise
 * and from the start of shutdown. Check answers on the queue thread; Watch
 * streams every change. */
#ifndef COMMSGATE_RPC_HEALTH_H
#define COMMSGATE_RPC_HEALTH_H

#include <stddef.h>

struct health_ctx;
struct rpc_method;

/* parts (1 to 32): what must all be up to serve, one per worker's Redis
 * connection; all start down. */
int health_new(int parts, struct health_ctx **out);
/* Any thread: part 0..parts-1 is up or not. Watchers hear of every change. */
void health_set_serving(struct health_ctx *h, int part, int up);
/* Any thread: SERVING (every part up, not shutting down). */
int health_is_serving(struct health_ctx *h);
/* Any thread: every part up, shutdown or not (/readyz, commsgate_redis_up). */
int health_parts_up(struct health_ctx *h);
/* Any thread: NOT_SERVING for good, and every Watch stream is ended. */
void health_shutdown(struct health_ctx *h);
/* After the server is gone. Clears *h; NULL is a no-op. */
void health_free(struct health_ctx **h);

/* Fills out[0..1] with Check and Watch; returns 2. */
size_t health_methods(struct rpc_method *out);

#endif
