/* config.c: defaults, every kind of check, *_FILE secrets, and that an error
 * names the setting without echoing a secret. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"

static const char *vars[64][2];
static int nvars;

static void set(const char *name, const char *value)
{
    for (int i = 0; i < nvars; i++)
        if (!strcmp(vars[i][0], name)) {
            vars[i][1] = value;
            return;
        }
    vars[nvars][0] = name;
    vars[nvars++][1] = value;
}

static const char *fake_getenv(const char *name)
{
    for (int i = 0; i < nvars; i++)
        if (!strcmp(vars[i][0], name))
            return vars[i][1];
    return NULL;
}

static int setup(void **state)
{
    nvars = 0;
    set("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef");
    set("TWILIO_AUTH_TOKEN", "tok-not-a-real-one");
    return 0;
}

static int load(struct config *cfg, char *err)
{
    return config_load(cfg, fake_getenv, err, 256);
}

static void test_defaults(void **state)
{
    struct config cfg;
    char err[256];
    assert_int_equal(load(&cfg, err), CG_OK);
    assert_string_equal(cfg.grpc_addr, "0.0.0.0:50051");
    assert_string_equal(cfg.http_addr, "0.0.0.0:8080");
    assert_string_equal(cfg.public_url, "http://0.0.0.0:8080");
    assert_string_equal(cfg.redis.host, "127.0.0.1");
    assert_int_equal(cfg.redis.port, 6379);
    assert_int_equal(cfg.redis.db, 0);
    assert_string_equal(cfg.api_base_url, "https://api.twilio.com");
    assert_string_equal(cfg.verify_base_url, "https://verify.twilio.com");
    assert_int_equal(cfg.grpc_threads, 2);
    assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
    assert_false(config_is_simulator(&cfg));
}

static void test_redis_url(void **state)
{
    struct config cfg;
    char err[256];
    set("REDIS_URL", "redis://app:p%40ss@cache.internal:6380/3");
    assert_int_equal(load(&cfg, err), CG_OK);
    assert_string_equal(cfg.redis.user, "app");
    assert_string_equal(cfg.redis.password, "p@ss");
    assert_string_equal(cfg.redis.host, "cache.internal");
    assert_int_equal(cfg.redis.port, 6380);
    assert_int_equal(cfg.redis.db, 3);

    set("REDIS_URL", "redis://:secret@[::1]:7000");
    assert_int_equal(load(&cfg, err), CG_OK);
    assert_string_equal(cfg.redis.user, "");
    assert_string_equal(cfg.redis.password, "secret");
    assert_string_equal(cfg.redis.host, "::1");
    assert_int_equal(cfg.redis.port, 7000);
    char nodes[64];
    config_redis_nodes(&cfg.redis, nodes, sizeof(nodes));
    assert_string_equal(nodes, "[::1]:7000"); /* no password */

    set("REDIS_URL", "redis://redis");
    assert_int_equal(load(&cfg, err), CG_OK);
    assert_string_equal(cfg.redis.host, "redis");
    assert_int_equal(cfg.redis.port, 6379);
    assert_int_equal(cfg.redis.nsentinels, 0);
}

static void test_cluster_url(void **state)
{
    struct config cfg;
    char err[512];
    set("REDIS_URL", "redis-cluster://:secret@10.0.0.1:7000,node2,[::1]:7002");
    assert_int_equal(load(&cfg, err), CG_OK);
    assert_int_equal(cfg.redis.nseeds, 3);
    assert_int_equal(cfg.redis.nsentinels, 0);
    assert_string_equal(cfg.redis.seeds[0].host, "10.0.0.1");
    assert_int_equal(cfg.redis.seeds[0].port, 7000);
    assert_string_equal(cfg.redis.seeds[1].host, "node2");
    assert_int_equal(cfg.redis.seeds[1].port, 6379);
    assert_string_equal(cfg.redis.seeds[2].host, "::1");
    assert_string_equal(cfg.redis.password, "secret");
    assert_int_equal(cfg.redis.db, 0);
    char nodes[64];
    config_redis_nodes(&cfg.redis, nodes, sizeof(nodes));
    assert_string_equal(nodes, "10.0.0.1:7000,node2:6379,[::1]:7002");
    config_redis_nodes(&cfg.redis, nodes, 12); /* cut, still a string */
    assert_string_equal(nodes, "10.0.0.1:70");
    const char *bad[] = {"redis-cluster://", "redis-cluster://a:7000/1", "redis-cluster://a,",
                         "redis-cluster://a,,b", "redis-cluster://a:0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set("REDIS_URL", bad[i]);
        assert_int_equal(load(&cfg, err), CG_ECONFIG);
        assert_non_null(strstr(err, "redis-cluster://"));
    }
}

static void test_sentinel_url(void **state)
{
    struct config cfg;
    char err[256];
    set("REDIS_URL", "redis-sentinel://app:p%40ss@s1:26380,10.0.0.2,[::1]:5000/2#my%20master");
    assert_int_equal(load(&cfg, err), CG_OK);
    assert_int_equal(cfg.redis.nsentinels, 3);
    assert_string_equal(cfg.redis.sentinels[0].host, "s1");
    assert_int_equal(cfg.redis.sentinels[0].port, 26380);
    assert_string_equal(cfg.redis.sentinels[1].host, "10.0.0.2");
    assert_int_equal(cfg.redis.sentinels[1].port, 26379);
    assert_string_equal(cfg.redis.sentinels[2].host, "::1");
    assert_int_equal(cfg.redis.sentinels[2].port, 5000);
    assert_string_equal(cfg.redis.master_name, "my master");
    char nodes[64];
    config_redis_nodes(&cfg.redis, nodes, sizeof(nodes));
    assert_string_equal(nodes, "s1:26380,10.0.0.2:26379,[::1]:5000");
    assert_string_equal(cfg.redis.user, "app");
    assert_string_equal(cfg.redis.password, "p@ss");
    assert_int_equal(cfg.redis.db, 2);

    set("REDIS_URL", "redis-sentinel://127.0.0.1:26379#mymaster");
    assert_int_equal(load(&cfg, err), CG_OK);
    assert_int_equal(cfg.redis.nsentinels, 1);
    assert_int_equal(cfg.redis.db, 0);
    assert_string_equal(cfg.redis.password, "");

    set("REDIS_URL", "redis://127.0.0.1");
    set("COMMSGATE_REDIS_WAIT_REPLICAS", "1");
    set("COMMSGATE_REDIS_WAIT_TIMEOUT_MS", "1000"); /* = COMMSGATE_REDIS_TIMEOUT_MS */
    assert_int_equal(load(&cfg, err), CG_ECONFIG);
    assert_non_null(strstr(err, "COMMSGATE_REDIS_WAIT_TIMEOUT_MS=1000 must be below"));
    set("COMMSGATE_REDIS_WAIT_TIMEOUT_MS", "999");
    assert_int_equal(load(&cfg, err), CG_OK);
    set("COMMSGATE_REDIS_WAIT_REPLICAS", "0");

    const char *bad[] = {"redis-sentinel://s1:26379", "redis-sentinel://s1:26379#",
                         "redis-sentinel://#m", "redis-sentinel://s1,#m", "redis-sentinel://s1,,s2#m",
                         "redis-sentinel://s1:0#m", "redis-sentinel://s1/x#m",
                         "redis-sentinel://a,b,c,d,e,f,g,h,i#m"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set("REDIS_URL", bad[i]);
        assert_int_equal(load(&cfg, err), CG_ECONFIG);
        assert_non_null(strstr(err, "redis-sentinel://"));
    }
}

static void test_bad_redis_url_hides_secret(void **state)
{
    struct config cfg;
    char err[256];
    const char *bad[] = {"http://x:6379", "redis://:pw@host:99999/0", "redis://:pw@host:6379/x",
                         "redis://:pw@:6379", "redis://:p%zzw@host",
                         "redis-sentinel://:pw@s1:26379", "redis-sentinel://:pw@s1:x#m"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set("REDIS_URL", bad[i]);
        assert_int_equal(load(&cfg, err), CG_ECONFIG);
        assert_non_null(strstr(err, "REDIS_URL"));
        assert_null(strstr(err, "pw"));
        assert_null(strchr(err, '\n'));
    }
}

static void test_each_bad_setting_is_named(void **state)
{
    static const char *cases[][2] = {
        {"COMMSGATE_GRPC_ADDR", "50051"},
        {"COMMSGATE_GRPC_ADDR", "host:port"},
        {"COMMSGATE_HTTP_ADDR", "0.0.0.0:70000"},
        {"COMMSGATE_PUBLIC_URL", "ftp://x"},
        {"TWILIO_ACCOUNT_SID", "AC123"},
        {"TWILIO_ACCOUNT_SID", "XX0123456789abcdef0123456789abcdef"},
        {"TWILIO_API_KEY_SID", "SKnothex0000000000000000000000000z"},
        {"TWILIO_PHONE_NUMBER", "4155551234"},
        {"TWILIO_WHATSAPP_NUMBER", "whatsapp:+0123"},
        {"TWILIO_MESSAGING_SERVICE_SID", "MG12"},
        {"TWILIO_VERIFY_SERVICE_SID", "VE0123456789abcdef0123456789abcdef"},
        {"TWILIO_API_BASE_URL", "api.twilio.com"},
        {"TWILIO_VERIFY_BASE_URL", ""},
        {"COMMSGATE_GRPC_THREADS", "0"},
        {"COMMSGATE_GRPC_THREADS", "2x"},
        {"COMMSGATE_LOG_LEVEL", "loud"},
        {"COMMSGATE_SHUTDOWN_GRACE_MS", "-1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config cfg;
        char err[256];
        setup(state);
        set(cases[i][0], cases[i][1]);
        assert_int_equal(load(&cfg, err), CG_ECONFIG);
        if (!strstr(err, cases[i][0]))
            fail_msg("error for %s=%s does not name it: %s", cases[i][0], cases[i][1], err);
    }
}

static void test_required(void **state)
{
    struct config cfg;
    char err[256];
    nvars = 0;
    assert_int_equal(load(&cfg, err), CG_ECONFIG);
    assert_non_null(strstr(err, "TWILIO_ACCOUNT_SID"));
    set("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef");
    assert_int_equal(load(&cfg, err), CG_ECONFIG);
    assert_non_null(strstr(err, "TWILIO_AUTH_TOKEN"));
    set("TWILIO_API_KEY_SID", "SK0123456789abcdef0123456789abcdef");
    assert_int_equal(load(&cfg, err), CG_ECONFIG);
    assert_non_null(strstr(err, "TWILIO_API_KEY_SECRET"));
    set("TWILIO_API_KEY_SECRET", "shh");
    assert_int_equal(load(&cfg, err), CG_OK);
}

static void test_secret_from_file(void **state)
{
    struct config cfg;
    char err[256];
    char path[] = "/tmp/commsgate-config-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("from-a-file\n", f);
    fclose(f);

    nvars = 0;
    set("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef");
    set("TWILIO_AUTH_TOKEN_FILE", path);
    assert_int_equal(load(&cfg, err), CG_OK);
    assert_string_equal(cfg.auth_token, "from-a-file");

    /* Both forms at once: which was meant? Refused, naming both, showing
     * neither value. */
    set("TWILIO_AUTH_TOKEN", "direct");
    assert_int_equal(load(&cfg, err), CG_ECONFIG);
    assert_non_null(strstr(err, "TWILIO_AUTH_TOKEN and TWILIO_AUTH_TOKEN_FILE"));
    assert_null(strstr(err, "direct"));
    assert_null(strstr(err, "from-a-file"));

    /* An empty file gives no token: said so, with the file's name. */
    f = fopen(path, "w");
    fputs("\n", f);
    fclose(f);
    nvars = 0;
    set("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef");
    set("TWILIO_AUTH_TOKEN_FILE", path);
    assert_int_equal(load(&cfg, err), CG_ECONFIG);
    assert_non_null(strstr(err, "TWILIO_AUTH_TOKEN_FILE"));
    assert_non_null(strstr(err, path));
    unlink(path);

    nvars = 0;
    set("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef");
    set("TWILIO_AUTH_TOKEN_FILE", "/nonexistent/commsgate/token");
    assert_int_equal(load(&cfg, err), CG_ECONFIG);
    assert_non_null(strstr(err, "TWILIO_AUTH_TOKEN_FILE"));
    assert_non_null(strstr(err, "/nonexistent/commsgate/token"));
}

/* A required setting given empty (TWILIO_ACCOUNT_SID= in an env file) is
 * refused at startup, not discovered at the first send. */
static void test_required_but_empty(void **state)
{
    struct config cfg;
    char err[256];
    set("TWILIO_ACCOUNT_SID", "");
    assert_int_equal(load(&cfg, err), CG_ECONFIG);
    assert_non_null(strstr(err, "TWILIO_ACCOUNT_SID is set but empty"));
}

static void test_normalisation(void **state)
{
    struct config cfg;
    char err[256];
    set("TWILIO_WHATSAPP_NUMBER", "whatsapp:+14155238886");
    set("TWILIO_API_BASE_URL", "http://127.0.0.1:9000/");
    set("COMMSGATE_PUBLIC_URL", "https://hooks.example.com/");
    set("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000000000");
    assert_int_equal(load(&cfg, err), CG_OK);
    assert_string_equal(cfg.whatsapp_number, "+14155238886");
    assert_string_equal(cfg.api_base_url, "http://127.0.0.1:9000");
    assert_string_equal(cfg.public_url, "https://hooks.example.com");
    assert_true(config_is_simulator(&cfg));
}

static void test_split_hostport(void **state)
{
    char host[64];
    int port;
    assert_int_equal(config_split_hostport("127.0.0.1:80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 80);
    assert_int_equal(config_split_hostport("[::]:50051", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::");
    assert_int_equal(port, 50051);
    assert_int_equal(config_split_hostport("::1:80", host, sizeof(host), &port), -1);
    assert_int_equal(config_split_hostport(":80", host, sizeof(host), &port), -1);
    assert_int_equal(config_split_hostport("h:", host, sizeof(host), &port), -1);
}

static void test_help_lists_every_setting(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print_help(f);
    fclose(f);
    const char *names[] = {"COMMSGATE_GRPC_ADDR", "COMMSGATE_HTTP_ADDR", "COMMSGATE_PUBLIC_URL",
                           "REDIS_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                           "TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET", "TWILIO_PHONE_NUMBER",
                           "TWILIO_MESSAGING_SERVICE_SID", "TWILIO_WHATSAPP_NUMBER",
                           "TWILIO_VERIFY_SERVICE_SID", "TWILIO_API_BASE_URL",
                           "TWILIO_VERIFY_BASE_URL", "TWILIO_AUTH_TOKEN_FILE", "REDIS_URL_FILE"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strstr(buf, names[i]))
            fail_msg("--help does not list %s", names[i]);
    assert_non_null(strstr(buf, "0.0.0.0:50051"));
    free(buf);
}

/* A CA file must be there to be read; empty means the system's bundle. */
static void test_twilio_ca_file(void **state)
{
    struct config cfg;
    char err[256];
    assert_int_equal(load(&cfg, err), CG_OK);
    assert_string_equal(cfg.twilio_ca_file, "");
    set("COMMSGATE_TWILIO_CA_FILE", "/nonexistent/ca.pem");
    assert_int_equal(load(&cfg, err), CG_ECONFIG);
    assert_non_null(strstr(err, "COMMSGATE_TWILIO_CA_FILE"));
    assert_non_null(strstr(err, "readable file"));
    char path[] = "/tmp/commsgate-ca-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    set("COMMSGATE_TWILIO_CA_FILE", path);
    assert_int_equal(load(&cfg, err), CG_OK);
    assert_string_equal(cfg.twilio_ca_file, path);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_twilio_ca_file, setup),
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_redis_url, setup),
        cmocka_unit_test_setup(test_sentinel_url, setup),
        cmocka_unit_test_setup(test_cluster_url, setup),
        cmocka_unit_test_setup(test_bad_redis_url_hides_secret, setup),
        cmocka_unit_test_setup(test_each_bad_setting_is_named, setup),
        cmocka_unit_test_setup(test_required, setup),
        cmocka_unit_test_setup(test_secret_from_file, setup),
        cmocka_unit_test_setup(test_required_but_empty, setup),
        cmocka_unit_test_setup(test_normalisation, setup),
        cmocka_unit_test(test_split_hostport),
        cmocka_unit_test(test_help_lists_every_setting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
