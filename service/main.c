/* commsgate: wiring only. config -> log -> the workers' loop threads
 * (Redis, HTTP; app.h) -> gRPC server; then wait for SIGINT/SIGTERM and
 * shut down in order. */
#include <curl/curl.h>
#include <grpc/grpc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin/admin.h"
#include "admin/process_metrics.h"
#include "app.h"
#include "auth/callers.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "loop/loop.h"
#include "redis/account.h"
#include "redis/idempotency.h"
#include "redis/resolve_queue.h"
#include "resolve/resolver.h"
#include "redis/policy.h"
#include "redis/redis.h"
#include "rpc/caller_auth.h"
#include "rpc/flow.h"
#include "rpc/grpc_log.h"
#include "rpc/grpc_tls.h"
#include "rpc/descriptors.h"
#include "rpc/health.h"
#include "rpc/messaging.h"
#include "rpc/reflection.h"
#include "rpc/server.h"
#include "twilio/http.h"
#include "twilio/twilio.h"
#include "webhook/server.h"


static const char *env(const char *name)
{
    return getenv(name);
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: commsgate [--help] [--version]\n\n"
                 "commsgate is a gRPC gateway to Twilio (SMS, WhatsApp, voice, Verify) that\n"
                 "enforces opt-outs, rate limits and idempotency in Redis. It is configured\n"
                 "entirely through the environment.\n\n");
    config_print_help(out);
}

static long long ms_since(const struct timespec *t0);

/* COMMSGATE_LOOPS=0: one loop per CPU this process may run on, at most 4
 * (measured on 2 cores: 2 loops answer 5-20% more SendSMS than 1, at the
 * same CPU per call; docs/PERFORMANCE.md). */
#define AUTO_LOOPS_MAX 4
static int auto_loops(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
    return n < 1 ? 1 : n > AUTO_LOOPS_MAX ? AUTO_LOOPS_MAX : n;
}
static struct timespec started_at;

/* A worker's loop thread. The first SERVING is logged with the time since
 * start, the figure operators and `make bench` read. */
static void on_redis_health(int up, void *data)
{
    static atomic_int served;
    struct worker *w = data;
    health_set_serving(w->app->health, w->index, up);
    if (up)
        idempotency_redis_up(w->idem); /* drops Redis could not take */
    if (health_is_serving(w->app->health) && !atomic_exchange(&served, 1))
        log_event(LOG_LEVEL_INFO, "serving",
                  json_pack("{s:I, s:i}", "since_start_ms", (json_int_t)ms_since(&started_at),
                            "loops", w->app->nworkers));
}

/* A worker's loop thread: start what the loop owns. */
static void loop_open(void *arg)
{
    struct worker *w = arg;
    if (redis_start(w->redis))
        log_error("redis_start_failed", "cannot arm the Redis timer");
    if (w->index == 0 && resolver_start(w->app->resolver))
        log_error("resolver_start_failed", "cannot arm the resolver's timer");
}

/* A worker's loop thread, at shutdown: closing Redis fails its pending
 * commands, which answers the calls waiting on them. */
static void loop_close(void *arg)
{
    struct worker *w = arg;
    struct app *app = w->app;
    flow_shutdown(w->flows);
    if (w->index == 0)
        resolver_free(&app->resolver); /* its entries go back to the queue for another replica */
    twilio_free(&w->twilio); /* fails requests in flight: their calls are answered */
    resolve_queue_free(&w->rqueue); /* what their answers queued goes out, Redis still here */
    /* Pending Redis callbacks answer RPCs and webhooks, so the webhook
     * server (its requests and counters) must outlive this. */
    redis_free(&w->redis);
    idempotency_free(&w->idem); /* after Redis, whose last replies may keep drops */
    account_free(&w->account); /* after Redis, whose last replies may still release leases */
    if (w->index == 0) {
        admin_free(&app->admin); /* its /metrics reads the webhook server's counters */
        webhook_free(&app->webhook);
    }
}

/* A worker's loop thread, when the shutdown grace is over: the calls still
 * held are answered for what they are (in flight at Twilio: outcome
 * unknown), before gRPC cancels whatever is left. */
static void flows_last_word(void *arg)
{
    struct worker *w = arg;
    flow_shutdown(w->flows);
}

/* Main thread: runs flows_last_word on every loop and waits for each. */
static void last_word(void *arg)
{
    struct app *app = arg;
    for (int i = 0; i < app->nworkers; i++)
        if (loop_call_wait(app->workers[i].loop, flows_last_word, &app->workers[i]))
            log_warn("shutdown_last_word_skipped", "loop %d did not take the shutdown task", i);
}

/* Main thread: one worker's loop and what it owns (app.h), unstarted. */
static int worker_new(struct app *app, int index)
{
    const struct config *cfg = app->cfg;
    struct worker *w = &app->workers[index];
    /* Each loop's Twilio client gets its share of the connections, rounded
     * up; the account budget (in Redis) bounds the requests in flight
     * exactly, over every loop and replica. */
    long conns = (cfg->twilio_concurrency + app->nworkers - 1) / app->nworkers;
    int rc;

    w->index = index;
    w->app = app;
    rc = loop_new(&w->loop);
    if (rc)
        return rc;
    struct redis_opts ropts = {.server = &cfg->redis,
                               .ping_interval_ms = cfg->redis_ping_interval_ms,
                               .timeout_ms = cfg->redis_timeout_ms,
                               .wait_replicas = cfg->redis_wait_replicas,
                               .wait_timeout_ms = cfg->redis_wait_timeout_ms,
                               .on_health = on_redis_health,
                               .health_data = w,
                               .on_connect = policy_load};
    rc = redis_new(loop_base(w->loop), &ropts, &w->redis);
    if (rc)
        return rc;
    rc = account_new(loop_base(w->loop), w->redis, cfg->send_rate, cfg->twilio_concurrency,
                     &w->account);
    if (rc)
        return rc;
    rc = idempotency_new(w->redis, cfg, &w->idem);
    if (rc)
        return rc;
    rc = flow_ctx_new(&w->flows);
    if (rc)
        return rc;
    rc = twilio_new(loop_base(w->loop), cfg, app->cas, conns, &w->twilio);
    if (rc)
        return rc;
    return resolve_queue_new(loop_base(w->loop), w->redis, cfg, &w->rqueue);
}

/* Main thread: what worker_new made, after its loop stopped (or if it never
 * ran). */
static void worker_free(struct worker *w)
{
    resolve_queue_free(&w->rqueue);
    twilio_free(&w->twilio);
    redis_free(&w->redis);
    idempotency_free(&w->idem);
    account_free(&w->account);
    loop_free(&w->loop);
}

static int worker_holds(const struct worker *w)
{
    return w->redis || w->account || w->twilio || w->rqueue || w->idem;
}

/* Which mode the gRPC port is in, said once at startup; a plaintext port
 * that is not on loopback lets anyone who reaches it spend the account. */
static void log_grpc_security(const struct config *cfg, const struct grpc_tls *tls)
{
    static const char *const modes[] = {"plaintext", "tls", "mutual_tls"};
    enum grpc_tls_mode mode = grpc_tls_mode(tls);
    char host[256];
    int port;
    int loopback = config_split_hostport(cfg->grpc_addr, host, sizeof(host), &port) == 0 &&
                   (strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 ||
                    strcmp(host, "::1") == 0 || strcmp(host, "[::1]") == 0);
    log_event(LOG_LEVEL_INFO, "grpc_security",
              json_pack("{s:s, s:s}", "mode", modes[mode], "grpc_addr", cfg->grpc_addr));
    if (mode == GRPC_TLS_OFF && !loopback)
        log_event(LOG_LEVEL_WARN, "grpc_plaintext_exposed",
                  json_pack("{s:s, s:s}", "grpc_addr", cfg->grpc_addr, "msg",
                            "the gRPC port is plaintext and not on loopback: anyone who reaches "
                            "it can send; set COMMSGATE_GRPC_TLS_CERT_FILE, _KEY_FILE and "
                            "_CLIENT_CA_FILE (mutual TLS), or listen on 127.0.0.1"));
    /* TLS without client certificates or a callers file still lets anyone
     * who reaches the port spend the account. */
    if (mode != GRPC_TLS_MUTUAL && !cfg->callers_file[0] && !loopback)
        log_event(LOG_LEVEL_WARN, "grpc_callers_unchecked",
                  json_pack("{s:s, s:s}", "grpc_addr", cfg->grpc_addr, "msg",
                            "no callers file and no client certificates: any client that "
                            "reaches this port can send; set COMMSGATE_CALLERS_FILE"));
}

static long long ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000LL + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

int main(int argc, char **argv)
{
    static struct config cfg;
    struct app app = {.cfg = &cfg};
    struct rpc_method methods[2 + 2 + MESSAGING_MAX_METHODS]; /* health, reflection, ... */
    size_t nmethods = 0;
    char err[512];
    sigset_t sigs;

    process_metrics_init();
    int sig = 0, rc, exit_code = 1;
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    started_at = t0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("commsgate %s\n", COMMSGATE_VERSION);
            return 0;
        }
        fprintf(stderr, "commsgate: unknown argument %s (try --help)\n", argv[i]);
        return 2;
    }

    if (config_load(&cfg, env, err, sizeof(err))) {
        log_event(LOG_LEVEL_ERROR, "config_invalid", json_pack("{s:s}", "msg", err));
        return 2;
    }
    log_set_level(cfg.log_level);
    /* The gRPC port's certificates are read now: a bad one is a config
     * error, before any thread starts. */
    if (grpc_tls_new(&cfg, err, sizeof(err), &app.tls)) {
        log_event(LOG_LEVEL_ERROR, "config_invalid", json_pack("{s:s}", "msg", err));
        return 2;
    }
    if (cfg.callers_file[0] && callers_load(cfg.callers_file, &app.callers, err, sizeof(err))) {
        log_event(LOG_LEVEL_ERROR, "config_invalid", json_pack("{s:s}", "msg", err));
        grpc_tls_free(&app.tls);
        return 2;
    }

    /* Signals are taken by sigwait in this thread only: block them before any
     * thread (gRPC's included) exists, so every thread inherits the mask. */
    /* A shell starts background jobs with SIGINT ignored; sigwait cannot see
     * an ignored signal, so restore the default first. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    char redis_nodes[CONFIG_MAX_SENTINELS * 264];
    config_redis_nodes(&cfg.redis, redis_nodes, sizeof(redis_nodes));
    log_event(LOG_LEVEL_INFO, "starting",
              json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "version", COMMSGATE_VERSION,
                        "grpc_addr", cfg.grpc_addr, "public_url", cfg.public_url, "redis_mode",
                        cfg.redis.nseeds ? "cluster" : cfg.redis.nsentinels ? "sentinel" : "node",
                        "redis_nodes", redis_nodes, "redis_master", cfg.redis.master_name,
                        "twilio_api", cfg.api_base_url, "twilio_verify", cfg.verify_base_url));
    if (config_is_simulator(&cfg))
        log_event(LOG_LEVEL_WARN, "twilio_simulator",
                  json_pack("{s:s, s:s}", "msg",
                            "TWILIO_ACCOUNT_SID is the simulator's test account: "
                            "nothing reaches a real phone",
                            "twilio_api", cfg.api_base_url));

    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        log_error("curl_init_failed", "curl_global_init failed");
        return 1;
    }
    grpc_log_route(); /* before gRPC can log anything */
    grpc_init();

    rc = policy_init();
    if (rc)
        goto fail;
    app.nworkers = cfg.loops ? cfg.loops : auto_loops();
    rc = health_new(app.nworkers, &app.health);
    if (rc)
        goto fail;
    rc = reflection_new(descriptor_set, descriptor_set_len, &app.reflection);
    if (rc)
        goto fail;
    rc = http_cas_new(cfg.twilio_ca_file, &app.cas);
    if (rc)
        goto fail;
    for (int i = 0; i < app.nworkers; i++) {
        rc = worker_new(&app, i);
        if (rc)
            goto fail;
    }
    struct worker *home = app_home(&app);
    struct resolver_deps rdeps = {.base = loop_base(home->loop),
                                  .cfg = &cfg,
                                  .redis = home->redis,
                                  .idem = home->idem,
                                  .queue = home->rqueue,
                                  .twilio = home->twilio};
    rc = resolver_new(&rdeps, &app.resolver);
    if (rc)
        goto fail;
    rc = webhook_new(&app, err, sizeof(err), &app.webhook);
    if (rc) {
        log_event(LOG_LEVEL_ERROR, "http_listen_failed", json_pack("{s:s}", "msg", err));
        goto fail;
    }
    rc = admin_new(&app, err, sizeof(err), &app.admin);
    if (rc) {
        log_event(LOG_LEVEL_ERROR, "admin_listen_failed", json_pack("{s:s}", "msg", err));
        goto fail;
    }
    for (int i = 0; i < app.nworkers; i++) {
        char name[16];
        snprintf(name, sizeof(name), i ? "cg-loop-%d" : "cg-loop", i);
        rc = loop_start(app.workers[i].loop, name);
        if (rc)
            goto fail;
        rc = loop_call(app.workers[i].loop, loop_open, &app.workers[i]);
        if (rc)
            goto fail;
    }

    log_grpc_security(&cfg, app.tls);
    rc = caller_auth_new(app.callers, &app.auth);
    if (rc)
        goto fail;
    nmethods += health_methods(methods + nmethods);
    nmethods += reflection_methods(app.reflection, methods + nmethods);
    nmethods += messaging_methods(methods + nmethods);
    struct rpc_server_opts sopts = {.addr = cfg.grpc_addr,
                                    .threads = cfg.grpc_threads,
                                    .max_message_bytes = cfg.max_message_bytes,
                                    .tls = app.tls,
                                    .authorize = caller_auth,
                                    .authorize_arg = app.auth,
                                    .app = &app};
    rc = rpc_server_new(&sopts, methods, nmethods, &app.server);
    if (rc)
        goto fail;
    rc = rpc_server_start(app.server, err, sizeof(err));
    if (rc) {
        log_event(LOG_LEVEL_ERROR, "grpc_listen_failed", json_pack("{s:s}", "msg", err));
        goto fail;
    }
    log_event(LOG_LEVEL_INFO, "ready",
              json_pack("{s:s, s:i, s:s, s:s, s:i, s:i, s:I}", "grpc_addr", cfg.grpc_addr,
                        "grpc_port", rpc_server_port(app.server), "http_addr", cfg.http_addr,
                        "admin_addr", cfg.admin_addr, "grpc_threads", cfg.grpc_threads, "loops",
                        app.nworkers, "startup_ms", (json_int_t)ms_since(&t0)));

    sigwait(&sigs, &sig);
    log_event(LOG_LEVEL_INFO, "stopping",
              json_pack("{s:s, s:i, s:i}", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
                        "calls_in_flight", rpc_server_live_calls(app.server), "grace_ms",
                        cfg.shutdown_grace_ms));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    health_shutdown(app.health);
    int cancelled = rpc_server_shutdown(app.server, cfg.shutdown_grace_ms, last_word, &app);
    exit_code = 0;
    log_event(LOG_LEVEL_INFO, "stopped",
              json_pack("{s:i, s:I}", "calls_cancelled", cancelled, "shutdown_ms",
                        (json_int_t)ms_since(&t0)));
fail:
    if (rc)
        log_event(LOG_LEVEL_ERROR, "startup_failed",
                  json_pack("{s:s, s:s}", "error", error_name(rc), "msg", error_message(rc)));
    /* Worker 0 first: its webhook server renders /metrics from every
     * worker's counters, so it goes before any of theirs. */
    for (int i = 0; i < app.nworkers; i++) {
        struct worker *w = &app.workers[i];
        if (!w->loop)
            continue;
        if (worker_holds(w) || (i == 0 && (app.webhook || app.resolver || app.admin)))
            loop_call(w->loop, loop_close, w);
        loop_stop(w->loop);
    }
    admin_free(&app.admin); /* only if the loop never ran */
    webhook_free(&app.webhook);
    resolver_free(&app.resolver); /* only if the loop never ran: nothing in flight */
    for (int i = 0; i < app.nworkers; i++)
        worker_free(&app.workers[i]);
    rpc_server_free(&app.server);
    grpc_tls_free(&app.tls); /* after the server, whose handshakes read it */
    caller_auth_free(&app.auth); /* after the server, whose calls it counted */
    callers_free(&app.callers);
    for (int i = 0; i < app.nworkers; i++)
        flow_ctx_free(&app.workers[i].flows); /* after the queue threads, which make flows */
    http_cas_free(&app.cas); /* after every Twilio client */
    health_free(&app.health);
    reflection_free(&app.reflection); /* after the server, whose calls read it */
    grpc_shutdown();
    curl_global_cleanup();
    return exit_code;
}
