/* The /metrics page, gathered from the modules that own the counters. */
#include "admin/metrics_page.h"
#include "admin/process_metrics.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "redis/redis.h"
#include "rpc/health.h"
#include "resolve/resolver.h"
#include "rpc/caller_auth.h"
#include "rpc/flow.h"
#include "rpc/server.h"
#include "twilio/twilio.h"
#include "webhook/connections.h"
#include "webhook/server.h"

static const char *const buckets[] = {"2xx", "400", "403", "413", "415", "5xx", "4xx"};
static const char *const routes[] = {"messages_status", "messages_inbound", "calls_status",
                                     "other"};

/* Every worker has its own connection to each node: one series per node,
 * counts summed, up only while every worker's connection is. */
#define NODES_MAX 64

static void redis_node_metrics(const struct app *app, struct evbuffer *out)
{
    struct redis_node_stat *all = calloc(NODES_MAX, sizeof(*all));
    struct redis_node_stat *one = calloc(NODES_MAX, sizeof(*one));
    int n = 0;
    if (!all || !one)
        goto done;
    for (int w = 0; w < app->nworkers; w++) {
        int got = redis_nodes(app->workers[w].redis, one, NODES_MAX);
        for (int i = 0; i < got && i < NODES_MAX; i++) {
            int j = 0;
            while (j < n && strcmp(all[j].addr, one[i].addr))
                j++;
            if (j == n && n == NODES_MAX)
                continue;
            if (j == n) {
                all[n++] = one[i];
                continue;
            }
            all[j].up &= one[i].up;
            all[j].commands += one[i].commands;
            all[j].redirects += one[i].redirects;
        }
    }
    /* A host name is Redis's to choose (CLUSTER SLOTS): nothing in it may
     * end the label. */
    for (int j = 0; j < n; j++)
        for (char *c = all[j].addr; *c; c++)
            if (*c == '"' || *c == '\\' || *c == '\n')
                *c = '_';
    static const struct {
        const char *name, *type, *help;
    } series[] = {
        {"commsgate_redis_node_up", "gauge",
         "1 while every worker's connection to this Redis node answers (the master in use "
         "under Sentinel; each node the slot map named under Cluster)."},
        {"commsgate_redis_node_commands_total", "counter",
         "Commands sent to this Redis node (health checks apart)."},
        {"commsgate_redis_node_redirects_total", "counter",
         "MOVED and ASK answers from this Redis node (Cluster: slots moving)."},
    };
    for (size_t k = 0; k < sizeof(series) / sizeof(series[0]); k++) {
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", series[k].name, series[k].help,
                            series[k].name, series[k].type);
        for (int j = 0; j < n; j++)
            evbuffer_add_printf(out, "%s{node=\"%s\"} %lu\n", series[k].name, all[j].addr,
                                k == 0   ? (unsigned long)all[j].up
                                : k == 1 ? all[j].commands
                                         : all[j].redirects);
    }
done:
    free(all);
    free(one);
}

void metrics_page(struct app *app, struct evbuffer *out)
{
    struct webhook_metrics *m = webhook_metrics(app->webhook);
    struct twilio_ctx *twilio[APP_MAX_WORKERS];
    struct flow_ctx *flows[APP_MAX_WORKERS];

    for (int i = 0; i < app->nworkers; i++) {
        twilio[i] = app->workers[i].twilio;
        flows[i] = app->workers[i].flows;
    }
    process_metrics_page(out);

    evbuffer_add_printf(out, "# HELP commsgate_redis_up 1 while Redis answers every worker's "
                             "pings.\n# TYPE commsgate_redis_up gauge\ncommsgate_redis_up %d\n",
                        health_parts_up(app->health));
    struct redis_counts rc, sum = {0, 0};
    for (int i = 0; i < app->nworkers; i++) {
        redis_counts(app->workers[i].redis, &rc);
        sum.master_changes += rc.master_changes;
        sum.no_master |= rc.no_master;
    }
    evbuffer_add_printf(out,
                        "# HELP commsgate_redis_no_master 1 while the sentinels name no master "
                        "(REDIS_URL=redis-sentinel://), as apart from a master not answering.\n"
                        "# TYPE commsgate_redis_no_master gauge\ncommsgate_redis_no_master %d\n"
                        "# HELP commsgate_redis_master_changes_total Times a worker's Redis "
                        "connection moved to a new master the sentinels named.\n"
                        "# TYPE commsgate_redis_master_changes_total counter\n"
                        "commsgate_redis_master_changes_total %lu\n",
                        sum.no_master, sum.master_changes);
    redis_node_metrics(app, out);
    rpc_server_metrics(app->server, out);
    twilio_metrics(twilio, app->nworkers, out);
    flow_metrics(flows, app->nworkers, out);
    caller_auth_metrics(app->auth, out);
    if (app->resolver)
        resolver_metrics(app->resolver, out);
    evbuffer_add_printf(out, "# HELP commsgate_message_status_total Message status callbacks "
                             "received, by status.\n# TYPE commsgate_message_status_total counter\n");
    for (int i = 0; i < MESSAGE_STATUS_COUNT; i++)
        evbuffer_add_printf(out, "commsgate_message_status_total{status=\"%s\"} %lu\n",
                            message_status_name(i), m->statuses[i]);
    evbuffer_add_printf(out, "# HELP commsgate_keywords_total Inbound opt-out keywords.\n"
                             "# TYPE commsgate_keywords_total counter\n"
                             "commsgate_keywords_total{keyword=\"stop\"} %lu\n"
                             "commsgate_keywords_total{keyword=\"start\"} %lu\n"
                             "commsgate_keywords_total{keyword=\"help\"} %lu\n",
                        m->optouts, m->optins, m->help);
    evbuffer_add_printf(out, "# HELP commsgate_webhook_signature_failures_total Webhooks refused "
                             "for a missing or wrong X-Twilio-Signature.\n"
                             "# TYPE commsgate_webhook_signature_failures_total counter\n"
                             "commsgate_webhook_signature_failures_total %lu\n",
                        m->signature_failures);
    struct conns_stats conns;
    webhook_connections(app->webhook, &conns);
    evbuffer_add_printf(out,
                        "# HELP commsgate_webhook_connections Connections open on the webhook "
                        "port.\n# TYPE commsgate_webhook_connections gauge\n"
                        "commsgate_webhook_connections %d\n"
                        "# HELP commsgate_webhook_connections_cut_total Connections closed by "
                        "COMMSGATE_HTTP_MAX_CONNECTIONS (full) or "
                        "COMMSGATE_HTTP_REQUEST_TIMEOUT_S (slow).\n"
                        "# TYPE commsgate_webhook_connections_cut_total counter\n"
                        "commsgate_webhook_connections_cut_total{reason=\"full\"} %lu\n"
                        "commsgate_webhook_connections_cut_total{reason=\"slow\"} %lu\n",
                        conns.open, conns.cut_full, conns.cut_slow);
    evbuffer_add_printf(out, "# HELP commsgate_webhook_requests_total Webhook requests by route "
                             "and answer.\n# TYPE commsgate_webhook_requests_total counter\n");
    for (int r = 0; r < 4; r++)
        for (int b = 0; b < 7; b++)
            if (m->requests[r][b])
                evbuffer_add_printf(out,
                                    "commsgate_webhook_requests_total{route=\"%s\",code=\"%s\"} %lu\n",
                                    routes[r], buckets[b], m->requests[r][b]);
}
