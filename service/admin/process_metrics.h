/* The standard process_* metrics (Prometheus' client libraries' names and
 * units) from /proc/self, and commsgate_build_info naming what this binary
 * was built from and runs on. Any thread. */
#ifndef COMMSGATE_ADMIN_PROCESS_METRICS_H
#define COMMSGATE_ADMIN_PROCESS_METRICS_H

struct evbuffer;

/* Call once at startup: the process start time process_start_time_seconds
 * reports. */
void process_metrics_init(void);
void process_metrics_page(struct evbuffer *out);

#endif
