/* commsgate's settings, read once at startup from the environment. Secrets
 * also come from a file named by the setting's *_FILE twin (for secrets
 * mounted by Docker or Kubernetes). */
#ifndef COMMSGATE_CONFIG_H
#define COMMSGATE_CONFIG_H

#include <stdio.h>

#include "core/log.h"

#define CONFIG_MAX_SENTINELS 8

struct config_redis_node {
    char host[256];
    int port;
};

struct config_redis {
    /* redis://: host and port are the server. redis-sentinel://: they are
     * whichever master the sentinels named last (redis.c writes them), and
     * the sentinels and master name say where to ask. */
    char host[256];
    int port;
    char user[128];     /* the data node's, never sent to sentinels */
    char password[256];
    int db;
    int nsentinels; /* 0: a single node (redis://) */
    struct config_redis_node sentinels[CONFIG_MAX_SENTINELS];
    char master_name[128];
    /* redis-cluster://: the nodes first asked for the slot map; host and
     * port are unused. */
    int nseeds;
    struct config_redis_node seeds[CONFIG_MAX_SENTINELS];
};

struct config {
    char grpc_addr[272];
    char http_addr[272];
    char admin_addr[272];
    int http_max_connections;    /* webhook port: open at once */
    int http_request_timeout_s;  /* webhook port: one request, first byte to last */
    char public_url[512];
    char redis_url[768];
    struct config_redis redis;

    char account_sid[40];
    char auth_token[128];
    char api_key_sid[40];
    char api_key_secret[128];
    char phone_number[24];
    char messaging_service_sid[40];
    char whatsapp_number[24];
    char verify_service_sid[40];
    char api_base_url[512];
    char verify_base_url[512];
    char twilio_ca_file[512];    /* "" : the system's CA bundle */
    char grpc_tls_cert_file[512]; /* "": the gRPC port is plaintext */
    char grpc_tls_key_file[512];
    char grpc_tls_client_ca_file[512]; /* "": no client certificate asked for */
    char callers_file[512];      /* "": any caller, scope from commsgate-caller */

    int grpc_threads;
    int loops;                   /* workers (app.h); 0: one per CPU, at most 4 */
    enum log_level log_level;
    int shutdown_grace_ms;
    int redis_ping_interval_ms;
    int redis_timeout_ms;
    int redis_wait_replicas;   /* WAIT for this many replicas after the writes that matter */
    int redis_wait_timeout_ms; /* ... for at most this long */
    long max_message_bytes;

    /* Policy (issue: the five RPCs). */
    int send_rate;               /* segments per second, whole account */
    int twilio_concurrency;      /* Twilio requests in flight, whole account */
    int idempotency_ttl_s;
    int resolve_catchup_s;   /* resolve/: how long Twilio's lists are given to show a message */
    int resolve_interval_ms; /* resolve/: the sweep */
    int verify_max_sends;
    int verify_send_window_s;
    int verify_cooldown_s;
    int verify_max_checks;
    int verify_check_window_s;
    int whatsapp_window_s;
    int whatsapp_max_body;
    int optout_ttl_days;
    int events_maxlen;
};

/* Fills *cfg from the environment through `getenv_fn` (getenv in the daemon;
 * tests pass their own). On failure returns CG_ECONFIG and writes one line
 * naming the setting and what is wrong into errbuf; never includes a
 * secret's value in it. */
int config_load(struct config *cfg, const char *(*getenv_fn)(const char *name),
                char *errbuf, size_t errlen);

/* The settings table for `commsgate --help`: name, default, meaning. */
void config_print_help(FILE *out);

/* True when the credentials are the simulator's documented test values, so
 * the log can say plainly that no real Twilio account is in use. */
int config_is_simulator(const struct config *cfg);

/* The Redis nodes REDIS_URL names, for the log: the node, the sentinels or
 * the cluster's seeds, as "host:port[,host:port...]" ("[v6]:port" for an
 * IPv6 address), never the user or password. Truncated to fit buf. */
void config_redis_nodes(const struct config_redis *r, char *buf, size_t len);

/* Splits "host:port" ("[v6]:port" too). Returns 0, or -1 if malformed. */
int config_split_hostport(const char *addr, char *host, size_t hostlen, int *port);

#endif
