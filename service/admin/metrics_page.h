/* GET /metrics: every module's counters in Prometheus text format. Loop thread. */
#ifndef COMMSGATE_ADMIN_METRICS_PAGE_H
#define COMMSGATE_ADMIN_METRICS_PAGE_H

struct app;
struct evbuffer;

void metrics_page(struct app *app, struct evbuffer *out);

#endif
