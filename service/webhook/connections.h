/* The webhook port's connections, watched: at most so many open at once,
 * and none taking longer than so many seconds over one request however
 * slowly it trickles bytes in (the idle timeout alone lets a client sending
 * a byte every few seconds hold a connection for ever).
 *
 * libevent 2.1's evhttp has no hook for either, so every connection it
 * accepts reads and writes through a pass-through filter bufferevent made
 * here (conns_bufferevent, given to evhttp_set_bevcb): the filter sees each
 * byte, and its end is the connection's. Everything runs on the loop that
 * owns the evhttp. */
#ifndef COMMSGATE_WEBHOOK_CONNECTIONS_H
#define COMMSGATE_WEBHOOK_CONNECTIONS_H

struct bufferevent;
struct event_base;
struct conns;

/* max_open: connections at once (one more is closed as it arrives); 0 is
 * no cap. request_s: the longest a request may take from its first byte to
 * its last (0: none). */
int conns_new(struct event_base *base, int max_open, int request_s, struct conns **out);
/* After evhttp_free: the connections still closing free it when the last
 * goes (libevent finalizes bufferevents later). Clears *cs; NULL no-op. */
void conns_free(struct conns **cs);

/* For evhttp_set_bevcb with the conns as arg: a new connection's
 * bufferevent, or NULL (evhttp then makes a plain, unwatched one). */
struct bufferevent *conns_bufferevent(struct event_base *base, void *cs);

struct conns_stats {
    int open;                  /* now, including those closing */
    unsigned long cut_full;    /* closed on arrival: max_open were open */
    unsigned long cut_slow;    /* closed for taking longer than request_s */
};
void conns_stats(const struct conns *cs, struct conns_stats *out);

#endif
