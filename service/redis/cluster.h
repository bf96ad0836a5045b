/* Redis Cluster (REDIS_URL=redis-cluster://): the slot map, asked of the
 * cluster (CLUSTER SLOTS), one connection per master (a single-node
 * redis_ctx each, so each keeps its own health, scripts and WAIT), every
 * command sent to the master of its key's slot, and MOVED, ASK and NOSCRIPT
 * answered here, so the record modules never see them. A call's decision
 * stays one round trip: its scripts are queued in the same loop turn, each
 * on the connection of its own slot, and run in parallel. Loop thread only. */
#ifndef COMMSGATE_REDIS_CLUSTER_H
#define COMMSGATE_REDIS_CLUSTER_H

#include <hiredis/async.h>
#include <stddef.h>

#include "redis/redis.h"

struct cluster;

/* opts: as for redis_new (server->seeds say where to ask first); on_health
 * is told when every slot has a master that answers, or no longer. */
int cluster_new(struct event_base *base, const struct redis_opts *opts, struct cluster **out);
int cluster_start(struct cluster *c);
int cluster_is_up(const struct cluster *c);
void cluster_counts(const struct cluster *c, struct redis_counts *out);
/* redis_nodes' contract: every node the map has named. Any thread. */
int cluster_nodes(const struct cluster *c, struct redis_node_stat *out, int max);

/* redis_command_argv's contract. The key is argv[1], or argv[3] for
 * EVALSHA (its first key). SCRIPT (LOAD) goes to every master, and fn is
 * called once for each; any other command without a key is CG_EINVAL. */
int cluster_command_argv(struct cluster *c, redisCallbackFn *fn, void *privdata, int argc,
                         const char **argv, const size_t *argvlen);

/* redis_after_writes's contract: w is told once every master written to in
 * this turn (every master, if none was) has answered its PING or WAIT. */
void cluster_after_writes(struct cluster *c, struct redis_waiter *w);

/* The slot of a key, with its {hash tag} (the cluster's CRC16). */
unsigned cluster_slot(const char *key, size_t len);

void cluster_free(struct cluster **c);

#endif
