/* Redis Sentinel (REDIS_URL=redis-sentinel://...): which node is the master
 * of a name, asked of the sentinels in turn, and word from them when they
 * switch it (+switch-master). redis.c asks before each connection and drops
 * its connection when told of a switch. Loop thread. */
#ifndef COMMSGATE_REDIS_SENTINEL_H
#define COMMSGATE_REDIS_SENTINEL_H

#include "core/config.h"

struct event_base;
struct redis_dialer;
struct sentinel;

struct sentinel_opts {
    const struct config_redis *cfg; /* sentinels and master_name; outlives us */
    int timeout_ms;                 /* for each sentinel's answer */
    /* The master's address, or host NULL when no sentinel named one (why
     * says what the last one did). */
    void (*on_master)(const char *host, int port, const char *why, void *data);
    /* The sentinels switched the master of our name (logged here, with
     * both addresses): the next ask names the new one. */
    void (*on_switch)(void *data);
    void *data;
};

int sentinel_new(struct event_base *base, struct redis_dialer *dialer,
                 const struct sentinel_opts *opts, struct sentinel **out);
/* Asks, from the sentinel that answered last; on_master is called once,
 * later. A call while an ask is under way joins it. */
void sentinel_ask(struct sentinel *s);
/* Clears *s; NULL is a no-op. No callback runs afterwards. */
void sentinel_free(struct sentinel **s);

#endif
