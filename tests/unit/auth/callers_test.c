/* auth/callers.c: the callers file read with libyaml (YAML and JSON), every
 * mistake refused with its reason, and identities matched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/callers.h"
#include "core/error.h"

/* sha256("s3cret-token") */
#define TOKEN_HASH "a81e611a041b13f078bf8ebe5dab4d4fd63fcc5594661c918bec093a2f416a7e"

static char path[64];

static int load_text(const char *text, struct callers **out, char *err)
{
    snprintf(path, sizeof(path), "/tmp/callers-test-%d.yaml", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    int rc = callers_load(path, out, err, 512);
    unlink(path);
    return rc;
}

static void test_yaml_and_json(void **state)
{
    struct callers *c = NULL;
    char err[512];
    assert_int_equal(load_text("callers:\n"
                               "  - name: billing\n"
                               "    client_cert_san: billing.internal\n"
                               "    rpcs: [SendSMS, GetMessage]\n"
                               "  - name: auth\n"
                               "    client_cert_subject: \"CN=auth,O=Example\"\n"
                               "    rpcs: [StartVerification, CheckVerification]\n"
                               "  - name: batch\n"
                               "    token_sha256: " TOKEN_HASH "\n"
                               "    rpcs: [\"*\"]\n",
                               &c, err),
                     CG_OK);
    assert_int_equal(callers_count(c), 3);
    assert_string_equal(callers_at(c, 0)->name, "billing");
    assert_true(caller_may(callers_at(c, 0), "SendSMS"));
    assert_false(caller_may(callers_at(c, 0), "PlaceCall"));
    assert_true(caller_may(callers_at(c, 2), "PlaceCall"));
    assert_false(caller_may(callers_at(c, 2), "NoSuchRpc"));
    callers_free(&c);
    assert_null(c);
    assert_int_equal(load_text("{\"callers\": [{\"name\": \"a\", \"client_cert_san\": \"a.x\", "
                               "\"rpcs\": [\"SendSMS\"]}]}",
                               &c, err),
                     CG_OK);
    assert_int_equal(callers_count(c), 1);
    callers_free(&c);
}

static void test_mistakes_are_refused_with_their_reason(void **state)
{
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"callers: [{name: a, client_cert_san: x, rpcs: [SendSMS], rpc: [PlaceCall]}]",
         "unknown key rpc"},
        {"callers: [{name: a, client_cert_san: x, token_sha256: " TOKEN_HASH ", rpcs: [\"*\"]}]",
         "exactly one of"},
        {"callers: [{name: a, rpcs: [\"*\"]}]", "exactly one of"},
        {"callers: [{name: a, token_sha256: abc, rpcs: [\"*\"]}]", "64 hex digits"},
        {"callers: [{name: a, client_cert_san: x, rpcs: [SendFax]}]", "unknown RPC SendFax"},
        {"callers: [{name: a, client_cert_san: x}]", "rpcs is required"},
        {"callers: [{name: Bad Name, client_cert_san: x, rpcs: [SendSMS]}]", "1 to 32"},
        {"callers: [{name: a, client_cert_san: x, rpcs: [SendSMS]},"
         " {name: a, client_cert_san: y, rpcs: [SendSMS]}]",
         "named twice"},
        {"callers: [{name: a, client_cert_san: x, rpcs: [SendSMS]},"
         " {name: b, client_cert_san: x, rpcs: [SendSMS]}]",
         "the same way"},
        {"callers: [{name: a, client_cert_san: x, rpcs: [SendSMS]}]\nextra: 1", "unknown top-level"},
        {"callers: {name: a}", "callers: list"},
        {"callers: [unclosed", "line"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct callers *c = NULL;
        char err[512];
        assert_int_equal(load_text(bad[i].text, &c, err), CG_ECONFIG);
        assert_null(c);
        if (!strstr(err, bad[i].why))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].why);
    }
    struct callers *c = NULL;
    char err[512];
    assert_int_equal(callers_load("/nonexistent/callers.yaml", &c, err, sizeof(err)),
                     CG_ECONFIG);
    assert_non_null(strstr(err, "/nonexistent/callers.yaml"));
}

static void test_match(void **state)
{
    struct callers *c = NULL;
    char err[512];
    assert_int_equal(load_text("callers:\n"
                               "  - {name: billing, client_cert_san: billing.internal, rpcs: [\"*\"]}\n"
                               "  - {name: auth, client_cert_subject: \"CN=auth,O=Example\", rpcs: [\"*\"]}\n"
                               "  - {name: batch, token_sha256: " TOKEN_HASH ", rpcs: [\"*\"]}\n",
                               &c, err),
                     CG_OK);
    const char *sans[] = {"127.0.0.1", "billing.internal"};
    struct caller_identity id = {.subject = "CN=whatever", .sans = sans, .nsans = 2};
    assert_string_equal(callers_match(c, &id)->name, "billing");
    struct caller_identity subj = {.subject = "CN=auth,O=Example"};
    assert_string_equal(callers_match(c, &subj)->name, "auth");
    /* A SAN is only a SAN: the same text as a subject does not match it. */
    struct caller_identity wrong = {.subject = "billing.internal"};
    assert_null(callers_match(c, &wrong));
    struct caller_identity none = {0};
    assert_null(callers_match(c, &none));
    /* Tokens: the hash of the token, not the hash itself, is what matches. */
    struct caller_identity hash_as_token = {.bearer = TOKEN_HASH};
    assert_null(callers_match(c, &hash_as_token));
    struct caller_identity tok = {.bearer = "not-the-token"};
    assert_null(callers_match(c, &tok));
    struct caller_identity good = {.bearer = "s3cret-token"};
    assert_string_equal(callers_match(c, &good)->name, "batch");
    callers_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_and_json),
        cmocka_unit_test(test_mistakes_are_refused_with_their_reason),
        cmocka_unit_test(test_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
