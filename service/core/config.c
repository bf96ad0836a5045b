/* Settings: one table names every variable, its default, its help text and
 * how it is checked, so --help, loading and the docs cannot drift apart. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

/* The simulator's documented test account (README, "The Twilio simulator"). */
#define SIM_ACCOUNT_SID "AC00000000000000000000000000000000"

enum kind { K_ADDR, K_URL, K_REDIS_URL, K_SID, K_E164, K_TEXT, K_FILE, K_INT, K_LEVEL };

struct setting {
    const char *name;
    const char *def;
    enum kind kind;
    int secret;          /* has a *_FILE twin; never echoed */
    size_t offset;       /* into struct config */
    size_t size;         /* of a char[] field */
    const char *prefix;  /* K_SID: "AC", "SK", ... */
    long min, max;       /* K_INT */
    const char *help;
};

#define STR(field) offsetof(struct config, field), sizeof(((struct config *)0)->field)
#define NUM(field) offsetof(struct config, field), 0

static const struct setting settings[] = {
    {"COMMSGATE_GRPC_ADDR", "0.0.0.0:50051", K_ADDR, 0, STR(grpc_addr), NULL, 0, 0,
     "host:port the gRPC server listens on"},
    {"COMMSGATE_ADMIN_ADDR", "127.0.0.1:8081", K_ADDR, 0, STR(admin_addr), NULL, 0, 0,
     "listen address for /metrics, /healthz and /readyz (keep it off the internet)"},
    {"COMMSGATE_HTTP_ADDR", "0.0.0.0:8080", K_ADDR, 0, STR(http_addr), NULL, 0, 0,
     "host:port of the webhook server (Twilio webhooks only; it faces the internet)"},
    {"COMMSGATE_HTTP_MAX_CONNECTIONS", "1024", K_INT, 0, NUM(http_max_connections), NULL, 1,
     1000000, "webhook port: connections open at once; one more is closed as it arrives"},
    {"COMMSGATE_HTTP_REQUEST_TIMEOUT_S", "30", K_INT, 0, NUM(http_request_timeout_s), NULL, 1,
     3600, "webhook port: the longest one request may take, first byte to last, however "
           "slowly it trickles in"},
    {"COMMSGATE_PUBLIC_URL", "", K_URL, 0, STR(public_url), NULL, 0, 0,
     "base URL Twilio reaches our webhooks at, e.g. https://hooks.example.com "
     "(empty: http://<COMMSGATE_HTTP_ADDR>)"},
    {"REDIS_URL", "redis://127.0.0.1:6379/0", K_REDIS_URL, 1, STR(redis_url), NULL, 0, 0,
     "redis://[[user]:password@]host:port/db, or through Sentinel\n"
     "    redis-sentinel://[[user]:password@]host:port[,host:port...][/db]#master-name\n"
     "    or a Redis Cluster: redis-cluster://[[user]:password@]host:port[,host:port...]"},
    {"TWILIO_ACCOUNT_SID", NULL, K_SID, 0, STR(account_sid), "AC", 0, 0,
     "Twilio account SID (AC...), required"},
    {"TWILIO_AUTH_TOKEN", "", K_TEXT, 1, STR(auth_token), NULL, 0, 0,
     "auth token: signs webhooks; authenticates API calls unless an API key is set"},
    {"TWILIO_API_KEY_SID", "", K_SID, 0, STR(api_key_sid), "SK", 0, 0,
     "API key SID (SK...) to authenticate API calls instead of the auth token"},
    {"TWILIO_API_KEY_SECRET", "", K_TEXT, 1, STR(api_key_secret), NULL, 0, 0,
     "secret of TWILIO_API_KEY_SID"},
    {"TWILIO_PHONE_NUMBER", "", K_E164, 0, STR(phone_number), NULL, 0, 0,
     "default sender for SMS and calls (E.164)"},
    {"TWILIO_MESSAGING_SERVICE_SID", "", K_SID, 0, STR(messaging_service_sid), "MG", 0, 0,
     "default messaging service (MG...) for SMS; used when no number is set"},
    {"TWILIO_WHATSAPP_NUMBER", "", K_E164, 0, STR(whatsapp_number), NULL, 0, 0,
     "WhatsApp sender (E.164, without the whatsapp: prefix)"},
    {"TWILIO_VERIFY_SERVICE_SID", "", K_SID, 0, STR(verify_service_sid), "VA", 0, 0,
     "Verify service SID (VA...) for StartVerification/CheckVerification"},
    {"TWILIO_API_BASE_URL", "https://api.twilio.com", K_URL, 0, STR(api_base_url), NULL, 0, 0,
     "base URL of the Twilio REST API (tests point it at the simulator)"},
    {"TWILIO_VERIFY_BASE_URL", "https://verify.twilio.com", K_URL, 0, STR(verify_base_url),
     NULL, 0, 0, "base URL of Twilio Verify"},
    {"COMMSGATE_TWILIO_CA_FILE", "", K_FILE, 0, STR(twilio_ca_file), NULL, 0, 0,
     "PEM file of the CAs trusted for Twilio's HTTPS, instead of the system's bundle "
     "(a private CA, tests)"},
    {"COMMSGATE_GRPC_TLS_CERT_FILE", "", K_FILE, 0, STR(grpc_tls_cert_file), NULL, 0, 0,
     "PEM certificate chain for TLS on the gRPC port (reloaded when the file changes); "
     "empty: plaintext, for a sidecar on loopback"},
    {"COMMSGATE_GRPC_TLS_KEY_FILE", "", K_FILE, 0, STR(grpc_tls_key_file), NULL, 0, 0,
     "PEM private key of COMMSGATE_GRPC_TLS_CERT_FILE"},
    {"COMMSGATE_GRPC_TLS_CLIENT_CA_FILE", "", K_FILE, 0, STR(grpc_tls_client_ca_file), NULL, 0,
     0, "PEM CAs for mutual TLS: a client without a certificate they signed is refused at the "
        "handshake"},
    {"COMMSGATE_CALLERS_FILE", "", K_FILE, 0, STR(callers_file), NULL, 0, 0,
     "YAML or JSON file naming the services that may call, how each is recognised (client "
     "certificate or token hash) and the RPCs each may use (deploy/callers.example.yaml); "
     "empty: anyone who reaches the port"},
    {"COMMSGATE_GRPC_THREADS", "2", K_INT, 0, NUM(grpc_threads), NULL, 1, 64,
     "threads polling the gRPC completion queue"},
    {"COMMSGATE_LOOPS", "0", K_INT, 0, NUM(loops), NULL, 0, 16,
     "event loops, each with its own Redis connection and Twilio connections; a call stays "
     "on one. 0: one per CPU commsgate may run on, at most 4"},
    {"COMMSGATE_LOG_LEVEL", "info", K_LEVEL, 0, NUM(log_level), NULL, 0, 0,
     "debug, info, warn or error"},
    {"COMMSGATE_SHUTDOWN_GRACE_MS", "5000", K_INT, 0, NUM(shutdown_grace_ms), NULL, 0, 600000,
     "on SIGTERM, how long in-flight calls may finish before they are cancelled"},
    {"COMMSGATE_REDIS_PING_INTERVAL_MS", "500", K_INT, 0, NUM(redis_ping_interval_ms), NULL,
     50, 60000, "how often Redis is pinged to decide health"},
    {"COMMSGATE_REDIS_TIMEOUT_MS", "1000", K_INT, 0, NUM(redis_timeout_ms), NULL, 50, 60000,
     "a Redis connection that answers nothing this long while a ping waits is dropped"},
    {"COMMSGATE_REDIS_WAIT_REPLICAS", "0", K_INT, 0, NUM(redis_wait_replicas), NULL, 0, 16,
     "replicas that must have an idempotency claim before Twilio is called, and an opt-out\n"
     "    or a send's record before it is answered (Redis WAIT); 0: the master's word"},
    {"COMMSGATE_REDIS_WAIT_TIMEOUT_MS", "100", K_INT, 0, NUM(redis_wait_timeout_ms), NULL, 1,
     10000, "how long each WAIT may take; fewer replicas by then refuses the call UNAVAILABLE"},
    {"COMMSGATE_MAX_MESSAGE_BYTES", "65536", K_INT, 0, NUM(max_message_bytes), NULL, 1024,
     4194304, "largest gRPC request accepted, in bytes"},
    {"COMMSGATE_SEND_RATE", "80", K_INT, 0, NUM(send_rate), NULL, 1, 100000,
     "SMS/WhatsApp segments per second for the whole account, shared by every replica"},
    {"COMMSGATE_TWILIO_CONCURRENCY", "100", K_INT, 0, NUM(twilio_concurrency), NULL, 1, 10000,
     "Twilio requests in flight for the whole account (Twilio answers 20429 above its limit)"},
    {"COMMSGATE_IDEMPOTENCY_TTL_SECONDS", "86400", K_INT, 0, NUM(idempotency_ttl_s), NULL, 60,
     2592000, "how long an idempotency_key is remembered"},
    {"COMMSGATE_RESOLVE_CATCHUP_SECONDS", "120", K_INT, 0, NUM(resolve_catchup_s), NULL, 1,
     86400, "an unknown outcome absent from Twilio's lists this long after the request was "
     "last possibly received counts as not sent (the key may send again)"},
    {"COMMSGATE_RESOLVE_INTERVAL_MS", "1000", K_INT, 0, NUM(resolve_interval_ms), NULL, 50,
     60000, "how often each replica takes unknown outcomes due for resolving"},
    {"COMMSGATE_VERIFY_MAX_SENDS", "3", K_INT, 0, NUM(verify_max_sends), NULL, 1, 1000,
     "StartVerification sends per number per window"},
    {"COMMSGATE_VERIFY_SEND_WINDOW_SECONDS", "600", K_INT, 0, NUM(verify_send_window_s), NULL,
     1, 86400, "the window COMMSGATE_VERIFY_MAX_SENDS counts in"},
    {"COMMSGATE_VERIFY_COOLDOWN_SECONDS", "30", K_INT, 0, NUM(verify_cooldown_s), NULL, 0, 3600,
     "least time between two StartVerification sends to one number"},
    {"COMMSGATE_VERIFY_MAX_CHECKS", "5", K_INT, 0, NUM(verify_max_checks), NULL, 1, 1000,
     "CheckVerification attempts per number per window, whatever their outcome"},
    {"COMMSGATE_VERIFY_CHECK_WINDOW_SECONDS", "600", K_INT, 0, NUM(verify_check_window_s), NULL,
     1, 86400, "the window COMMSGATE_VERIFY_MAX_CHECKS counts in"},
    {"COMMSGATE_WHATSAPP_WINDOW_SECONDS", "86400", K_INT, 0, NUM(whatsapp_window_s), NULL, 1,
     604800, "how long an inbound WhatsApp message opens the free-form window"},
    {"COMMSGATE_WHATSAPP_MAX_BODY", "1024", K_INT, 0, NUM(whatsapp_max_body), NULL, 1, 1600,
     "longest free-form WhatsApp body, in characters"},
    {"COMMSGATE_OPTOUT_TTL_DAYS", "3650", K_INT, 0, NUM(optout_ttl_days), NULL, 1, 36500,
     "how long an opt-out (STOP) is kept; every STOP renews it"},
    {"COMMSGATE_EVENTS_MAXLEN", "100000", K_INT, 0, NUM(events_maxlen), NULL, 100, 100000000,
     "about how many events the cg:events stream keeps (XADD MAXLEN ~)"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

void config_print_help(FILE *out)
{
    fprintf(out, "Settings (environment variables; a secret may instead be read from the\n"
                 "file named by NAME_FILE):\n\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        fprintf(out, "  %-34s default: %s\n      %s\n", s->name,
                s->def ? (*s->def ? s->def : "(empty)") : "(required)", s->help);
        if (s->secret)
            fprintf(out, "      secret: or from the file named by %s_FILE\n", s->name);
    }
}

int config_split_hostport(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon;
    const char *h = addr;
    size_t hl;

    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return -1;
        h = addr + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || strchr(addr, ':') != colon)
            return -1;
        hl = (size_t)(colon - addr);
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || p < 0 || p > 65535)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

static int is_e164(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

static int is_sid(const char *s, const char *prefix)
{
    if (strlen(s) != 34 || strncmp(s, prefix, 2) != 0)
        return 0;
    for (int i = 2; i < 34; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

static int is_http_url(const char *s)
{
    return (strncmp(s, "http://", 7) == 0 && s[7]) || (strncmp(s, "https://", 8) == 0 && s[8]);
}

/* Reads a percent-encoded URL part into out; -1 on bad encoding or length. */
static int url_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2]))
                return -1;
            char hex[3] = {s[i + 1], s[i + 2], 0};
            c = (char)strtol(hex, NULL, 16);
            i += 2;
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

/* One host[:port] (IPv6 in brackets) of `len` bytes at p; 6379 if no port. */
static int parse_node(const char *p, size_t len, int def_port, struct config_redis_node *n)
{
    char hostport[300];
    if (len == 0 || len >= sizeof(hostport))
        return -1;
    memcpy(hostport, p, len);
    hostport[len] = '\0';
    if (hostport[0] == '[' || strchr(hostport, ':'))
        return config_split_hostport(hostport, n->host, sizeof(n->host), &n->port) ||
                       n->port == 0
                   ? -1
                   : 0;
    if (len >= sizeof(n->host))
        return -1;
    memcpy(n->host, hostport, len + 1);
    n->port = def_port;
    return 0;
}

/* host[:port][,host[:port]...] from p to end into at most `max` nodes. */
static int parse_node_list(const char *p, const char *end, int def_port,
                           struct config_redis_node *nodes, int max, int *n)
{
    *n = 0;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        if (*n == max || parse_node(p, (size_t)(stop - p), def_port, &nodes[*n]))
            return -1;
        (*n)++;
        p = comma ? comma + 1 : end;
        if (comma && p == end)
            return -1; /* a trailing comma */
    }
    return *n ? 0 : -1;
}

/* redis://[[user]:password@]host[:port][/db],
 * redis-sentinel://[[user]:password@]host1[:port1][,host2[:port2]...][/db]#master
 * (the form Lettuce and other clients read; sentinels default to 26379) or
 * redis-cluster://[[user]:password@]host1[:port1][,host2[:port2]...]
 * (a cluster has db 0 only). */
static int parse_redis_url(const char *url, struct config_redis *r)
{
    const char *p, *end;
    const char *at, *slash, *hash = NULL;
    int sentinel = 0, cluster = 0;

    memset(r, 0, sizeof(*r));
    if (strncmp(url, "redis://", 8) == 0) {
        p = url + 8;
    } else if (strncmp(url, "redis-cluster://", 16) == 0) {
        p = url + 16;
        cluster = 1;
    } else if (strncmp(url, "redis-sentinel://", 17) == 0) {
        p = url + 17;
        sentinel = 1;
        hash = strchr(p, '#');
        if (!hash || !hash[1] || strlen(hash + 1) >= sizeof(r->master_name))
            return -1; /* the master's name is what sentinels are asked about */
        if (url_decode(hash + 1, strlen(hash + 1), r->master_name, sizeof(r->master_name)))
            return -1;
    } else {
        return -1;
    }
    end = hash ? hash : p + strlen(p);
    slash = memchr(p, '/', (size_t)(end - p));
    at = memchr(p, '@', slash ? (size_t)(slash - p) : (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return -1; /* user without password: Redis ACL needs both */
        if (url_decode(p, (size_t)(colon - p), r->user, sizeof(r->user)) ||
            url_decode(colon + 1, (size_t)(at - colon - 1), r->password, sizeof(r->password)))
            return -1;
        p = at + 1;
    }
    const char *hosts_end = slash ? slash : end;
    if (sentinel) {
        if (parse_node_list(p, hosts_end, 26379, r->sentinels, CONFIG_MAX_SENTINELS,
                            &r->nsentinels))
            return -1;
    } else if (cluster) {
        if (parse_node_list(p, hosts_end, 6379, r->seeds, CONFIG_MAX_SENTINELS, &r->nseeds))
            return -1;
    } else {
        struct config_redis_node n;
        if (parse_node(p, (size_t)(hosts_end - p), 6379, &n))
            return -1;
        memcpy(r->host, n.host, sizeof(r->host));
        r->port = n.port;
    }
    r->db = 0;
    if (slash && slash + 1 < end) {
        char dbs[8], *tail;
        size_t dl = (size_t)(end - slash - 1);
        if (dl >= sizeof(dbs))
            return -1;
        memcpy(dbs, slash + 1, dl);
        dbs[dl] = '\0';
        errno = 0;
        long db = strtol(dbs, &tail, 10);
        if (errno || *tail || db < 0 || db > 65535)
            return -1;
        r->db = (int)db;
    }
    return cluster && r->db ? -1 : 0;
}

/* Value of a setting: the variable itself, else the content of NAME_FILE for
 * secrets (trailing newlines dropped), else the default. Both forms at once
 * is refused (which one was meant?), and so is a required setting given
 * empty. */
static int read_value(const struct setting *s, const char *(*getenv_fn)(const char *),
                      char *buf, size_t len, char *errbuf, size_t errlen)
{
    char fname[96];
    const char *v = getenv_fn(s->name);
    const char *path = NULL;

    if (s->secret) {
        snprintf(fname, sizeof(fname), "%s_FILE", s->name);
        path = getenv_fn(fname);
    }
    if (v && path) {
        snprintf(errbuf, errlen, "config: both %s and %s are set: set one", s->name, fname);
        return CG_ECONFIG;
    }
    if (v) {
        if (strlen(v) >= len)
            goto too_long;
        if (!s->def && !*v) {
            snprintf(errbuf, errlen, "config: %s is set but empty; it is required", s->name);
            return CG_ECONFIG;
        }
        strcpy(buf, v);
        return 0;
    }
    if (s->secret) {
        if (path) {
            FILE *f = fopen(path, "r");
            if (!f) {
                snprintf(errbuf, errlen, "config: %s: cannot read %s: %s", fname, path,
                         strerror(errno));
                return CG_ECONFIG;
            }
            size_t n = fread(buf, 1, len, f);
            int big = n == len;
            fclose(f);
            if (big) {
                snprintf(errbuf, errlen, "config: %s: file %s is too long", fname, path);
                return CG_ECONFIG;
            }
            buf[n] = '\0';
            while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = '\0';
            if (!s->def && !n) {
                snprintf(errbuf, errlen, "config: %s: file %s is empty; %s is required", fname,
                         path, s->name);
                return CG_ECONFIG;
            }
            return 0;
        }
    }
    if (!s->def) {
        snprintf(errbuf, errlen, "config: %s is required (see commsgate --help)", s->name);
        return CG_ECONFIG;
    }
    strcpy(buf, s->def);
    return 0;
too_long:
    snprintf(errbuf, errlen, "config: %s is too long (at most %zu bytes)", s->name, len - 1);
    return CG_ECONFIG;
}

static int check_value(const struct setting *s, struct config *cfg, const char *v,
                       char *errbuf, size_t errlen)
{
    char host[256];
    int port;
    char *field = (char *)cfg + s->offset;
    const char *want = NULL;

    switch (s->kind) {
    case K_ADDR:
        if (config_split_hostport(v, host, sizeof(host), &port))
            want = "host:port, e.g. 0.0.0.0:50051";
        break;
    case K_URL: /* empty only where empty is the default */
        if ((*v || (s->def && *s->def)) && !is_http_url(v))
            want = "an http:// or https:// URL";
        break;
    case K_REDIS_URL:
        if (parse_redis_url(v, &cfg->redis))
            want = "redis://[[user]:password@]host:port/db, "
                   "redis-sentinel://[[user]:password@]host:port[,host:port...][/db]#master "
                   "or redis-cluster://[[user]:password@]host:port[,host:port...]";
        break;
    case K_SID:
        if (*v && !is_sid(v, s->prefix))
            want = s->prefix[0] == 'A'   ? "AC followed by 32 hex digits"
                   : s->prefix[0] == 'S' ? "SK followed by 32 hex digits"
                   : s->prefix[0] == 'M' ? "MG followed by 32 hex digits"
                                         : "VA followed by 32 hex digits";
        break;
    case K_E164:
        if (*v && !is_e164(strncmp(v, "whatsapp:", 9) == 0 ? v + 9 : v))
            want = "an E.164 number such as +14155551234";
        break;
    case K_TEXT:
        break;
    case K_FILE:
        if (*v && access(v, R_OK) != 0)
            want = "a readable file";
        break;
    case K_INT: {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno || !*v || *end || n < s->min || n > s->max) {
            snprintf(errbuf, errlen, "config: %s=%s: expected a whole number from %ld to %ld",
                     s->name, v, s->min, s->max);
            return CG_ECONFIG;
        }
        if (s->offset == offsetof(struct config, max_message_bytes))
            cfg->max_message_bytes = n;
        else
            *(int *)field = (int)n;
        return 0;
    }
    case K_LEVEL:
        if (log_level_parse(v, &cfg->log_level))
            want = "debug, info, warn or error";
        return want ? (snprintf(errbuf, errlen, "config: %s=%s: expected %s", s->name, v, want),
                       CG_ECONFIG)
                    : 0;
    }
    if (want) {
        if (s->secret)
            snprintf(errbuf, errlen, "config: %s: expected %s (value not shown: secret)",
                     s->name, want);
        else if (s->kind == K_SID)
            /* A token pasted into a SID setting by mistake must not be logged. */
            snprintf(errbuf, errlen,
                     "config: %s: expected %s (value not shown: it may be a credential)",
                     s->name, want);
        else
            snprintf(errbuf, errlen, "config: %s=%s: expected %s", s->name, v, want);
        return CG_ECONFIG;
    }
    return 0;
}

static void strip_slash(char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        url[--n] = '\0';
}

int config_load(struct config *cfg, const char *(*getenv_fn)(const char *name),
                char *errbuf, size_t errlen)
{
    char value[1024];
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        size_t cap = s->size ? s->size : sizeof(value);
        rc = read_value(s, getenv_fn, value, cap, errbuf, errlen);
        if (rc)
            return rc;
        rc = check_value(s, cfg, value, errbuf, errlen);
        if (rc)
            return rc;
        if (s->size)
            strcpy((char *)cfg + s->offset, value);
    }
    if (strncmp(cfg->whatsapp_number, "whatsapp:", 9) == 0)
        memmove(cfg->whatsapp_number, cfg->whatsapp_number + 9,
                strlen(cfg->whatsapp_number + 9) + 1);
    strip_slash(cfg->api_base_url);
    strip_slash(cfg->verify_base_url);
    strip_slash(cfg->public_url);
    if (!cfg->public_url[0])
        snprintf(cfg->public_url, sizeof(cfg->public_url), "http://%s", cfg->http_addr);

    if (cfg->api_key_sid[0] && !cfg->api_key_secret[0]) {
        snprintf(errbuf, errlen, "config: TWILIO_API_KEY_SECRET is required with TWILIO_API_KEY_SID");
        return CG_ECONFIG;
    }
    if (cfg->api_key_secret[0] && !cfg->api_key_sid[0]) {
        snprintf(errbuf, errlen, "config: TWILIO_API_KEY_SID is required with TWILIO_API_KEY_SECRET");
        return CG_ECONFIG;
    }
    /* A WAIT holds the connection until it returns: longer than the ping
     * timeout, and the health check would drop a Redis that is only waiting
     * for its replicas. */
    if (cfg->redis_wait_replicas > 0 && cfg->redis_wait_timeout_ms >= cfg->redis_timeout_ms) {
        snprintf(errbuf, errlen,
                 "config: COMMSGATE_REDIS_WAIT_TIMEOUT_MS=%d must be below "
                 "COMMSGATE_REDIS_TIMEOUT_MS=%d (a WAIT holds the connection)",
                 cfg->redis_wait_timeout_ms, cfg->redis_timeout_ms);
        return CG_ECONFIG;
    }
    if (!cfg->auth_token[0] && !cfg->api_key_sid[0]) {
        const char *file = getenv_fn("TWILIO_AUTH_TOKEN_FILE");
        if (file)
            snprintf(errbuf, errlen, "config: TWILIO_AUTH_TOKEN_FILE: file %s is empty", file);
        else
            snprintf(errbuf, errlen, "config: TWILIO_AUTH_TOKEN (or TWILIO_API_KEY_SID + "
                                     "TWILIO_API_KEY_SECRET) is required");
        return CG_ECONFIG;
    }
    return CG_OK;
}

void config_redis_nodes(const struct config_redis *r, char *buf, size_t len)
{
    const struct config_redis_node one = {.port = r->port};
    const struct config_redis_node *nodes = r->nseeds ? r->seeds : r->sentinels;
    int n = r->nseeds ? r->nseeds : r->nsentinels;
    size_t at = 0;

    if (!n) {
        nodes = &one;
        n = 1;
    }
    buf[0] = '\0';
    for (int i = 0; i < n && at < len; i++) {
        const char *host = nodes == &one ? r->host : nodes[i].host;
        int v6 = strchr(host, ':') != NULL;
        int w = snprintf(buf + at, len - at, "%s%s%s%s:%d", i ? "," : "", v6 ? "[" : "", host,
                         v6 ? "]" : "", nodes[i].port);
        if (w < 0)
            break;
        at += (size_t)w;
    }
}

int config_is_simulator(const struct config *cfg)
{
    return strcmp(cfg->account_sid, SIM_ACCOUNT_SID) == 0;
}
