/* idempotency.c against a real redis-server: a key's record claimed, settled
 * and replayed, refused for another request, dropped only by its owner,
 * abandoned after its lease, resolved found or absent, and drops kept while
 * Redis is away. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "redis/idempotency.h"
#include "redis/keys.h"
#include "support/policy_redis.h"
#include "support/redis_server.h"

static struct test_redis rs;
static struct config cfg;
static struct idempotency_ctx *idem;
static struct test_decision d;
static char key[KEYS_MAX];

static const char *cmd(const char *a0, const char *a1, const char *a2, const char *a3)
{
    return test_redis_cmd(&rs, a0, a1, a2, a3);
}

static int setup(void **state)
{
    cfg.idempotency_ttl_s = 3600;
    test_redis_open(&rs, NULL);
    assert_int_equal(idempotency_new(rs.r, &cfg, &idem), 0);
    assert_int_equal(idempotency_key(key, sizeof(key), "billing", "order-7"), 0);
    return 0;
}

static int teardown(void **state)
{
    free(d.res.repeat);
    idempotency_free(&idem);
    test_redis_close(&rs);
    return 0;
}

static int flush(void **state)
{
    cmd("FLUSHALL", NULL, NULL, NULL);
    return 0;
}

static const struct idempotency_send sms = {.api = "Messages", .form = "To=%2B1&Body=hi",
                                            .form_len = 15};

static enum policy_verdict claim_for(const char *fp, const char *owner, long lease_ms,
                                     const struct idempotency_send *send)
{
    free(d.res.repeat);
    d.res.repeat = NULL;
    assert_int_equal(
        idempotency_claim(idem, key, fp, owner, lease_ms, send, test_decision_arm(&d)), 0);
    test_decision_wait(rs.base, &d);
    return d.res.verdict;
}

static enum policy_verdict claim(const char *fp, const char *owner, long lease_ms)
{
    return claim_for(fp, owner, lease_ms, &sms);
}

/* What the resolver reads, and what it writes back. */
static struct idempotency_facts facts;
static char facts_form[64];
static int written, answered;

static void on_facts(const struct idempotency_facts *f, void *data)
{
    facts = *f;
    snprintf(facts_form, sizeof(facts_form), "%s", f->form);
    facts.form = facts_form;
    facts.api = strcmp(f->api, "Messages") == 0 ? "Messages" : f->api[0] ? "?" : "";
    answered = 1;
}

static void read_record(void)
{
    answered = 0;
    assert_int_equal(idempotency_read(idem, key, on_facts, NULL), 0);
    test_run_until(rs.base, &answered, 1, 3000);
}

static void on_written(int ok, void *data)
{
    written = ok;
    answered = 1;
}

static int found(const char *sid)
{
    answered = 0;
    assert_int_equal(idempotency_found(idem, key, sid, "sent", on_written, NULL), 0);
    test_run_until(rs.base, &answered, 1, 3000);
    return written;
}

static int absent(int64_t t0)
{
    answered = 0;
    assert_int_equal(idempotency_absent(idem, key, t0, on_written, NULL), 0);
    test_run_until(rs.base, &answered, 1, 3000);
    return written;
}

static void test_key_is_caller_and_key(void **state)
{
    char k[KEYS_MAX], small[16];
    assert_int_equal(idempotency_key(k, sizeof(k), "billing", "order-7"), 0);
    assert_string_equal(k, "cg:{key:billing:order-7}:idem");
    assert_int_equal(idempotency_key(small, sizeof(small), "billing", "order-7"), -1);
}

static void test_claim_settle_repeat(void **state)
{
    static const uint8_t body[] = {0x0a, 0x00, 0x12, 0x03, 'S', 'M', '1'}; /* a NUL inside */
    assert_int_equal(claim("fp1", "owner-a", 10000), POLICY_GO);
    assert_string_equal(cmd("HGET", key, "state", NULL), "pending");
    assert_string_equal(cmd("HGET", key, "owner", NULL), "owner-a");
    assert_true(atoll(cmd("TTL", key, NULL, NULL)) > 0);
    /* Claimed and not settled: another caller of the key waits. */
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_IN_FLIGHT);
    assert_true(d.res.ms > 9000 && d.res.ms <= 10000);
    struct policy_outcome o = {.code = 0, .body = (uint8_t *)body, .body_len = sizeof(body)};
    idempotency_settle(idem, key, &o);
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_REPEAT);
    assert_int_equal(d.res.repeat->code, 0);
    assert_int_equal(d.res.repeat->body_len, sizeof(body));
    assert_memory_equal(d.res.repeat->body, body, sizeof(body));
    /* The same key for another request (other recipient, content or RPC). */
    assert_int_equal(claim("fp2", "owner-b", 10000), POLICY_REFUSE);
    assert_int_equal(d.res.reason, REASON_IDEMPOTENCY_KEY_REUSED);
}

static void test_settled_unknown_repeats_unknown(void **state)
{
    assert_int_equal(claim("fp1", "owner-a", 10000), POLICY_GO);
    struct policy_outcome o = {.code = 2, .msg = "outcome unknown"};
    idempotency_settle(idem, key, &o);
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_REPEAT);
    assert_int_equal(d.res.repeat->code, 2);
    assert_string_equal(d.res.repeat->msg, "outcome unknown");
}

static void test_only_the_owner_drops(void **state)
{
    assert_int_equal(claim("fp1", "owner-a", 10000), POLICY_GO);
    idempotency_drop(idem, key, "owner-b"); /* not its claim */
    assert_string_equal(cmd("HGET", key, "owner", NULL), "owner-a");
    idempotency_drop(idem, key, "owner-a");
    assert_string_equal(cmd("EXISTS", key, NULL, NULL), "0");
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_GO); /* free again */
}

static void test_drop_survives_lost_scripts(void **state)
{
    assert_int_equal(claim("fp1", "owner-a", 10000), POLICY_GO);
    cmd("SCRIPT", "FLUSH", NULL, NULL);
    idempotency_drop(idem, key, "owner-a");
    /* NOSCRIPT, then the reload and the drop again, behind this EXISTS. */
    int tries = 0;
    while (strcmp(cmd("EXISTS", key, NULL, NULL), "0") != 0 && ++tries < 20)
        ;
    assert_string_equal(cmd("EXISTS", key, NULL, NULL), "0");
}

static void test_abandoned_claim_is_unknown_not_resent(void **state)
{
    /* A claim that cannot be resolved (no list to read) stays unknown. */
    assert_int_equal(claim_for("fp1", "owner-a", 100, NULL), POLICY_GO);
    usleep(150 * 1000);
    assert_int_equal(claim_for("fp1", "owner-b", 10000, NULL), POLICY_REFUSE);
    assert_int_equal(d.res.reason, REASON_OUTCOME_UNKNOWN);
    assert_string_equal(cmd("HGET", key, "owner", NULL), "owner-a"); /* nobody took it */
}

static void test_abandoned_claim_is_resolving(void **state)
{
    assert_int_equal(claim("fp1", "owner-a", 100), POLICY_GO);
    read_record();
    assert_int_equal(facts.state, IDEMPOTENCY_PENDING);
    assert_true(facts.lease_left_ms > 0 && facts.lease_left_ms <= 100);
    assert_string_equal(facts.api, "Messages");
    assert_string_equal(facts.form, "To=%2B1&Body=hi");
    int64_t t0 = facts.t0;
    assert_true(facts.t1 >= t0 + 100 - 1 && facts.t1 <= t0 + 101);
    usleep(150 * 1000);
    /* Its owner is gone: a repeat hears "resolving", never goes ahead. */
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_RESOLVING);
    assert_string_equal(cmd("HGET", key, "state", NULL), "unknown");
    assert_int_equal(claim("fp1", "owner-c", 10000), POLICY_RESOLVING);
    read_record();
    assert_int_equal(facts.state, IDEMPOTENCY_UNKNOWN);
    assert_int_equal(facts.t0, t0);
}

static void test_owner_marks_unknown_then_found(void **state)
{
    assert_int_equal(claim("fp1", "owner-a", 60000), POLICY_GO);
    idempotency_unknown(idem, key, "owner-a");
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_RESOLVING);
    assert_int_equal(found("SM123"), 1);
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_FOUND);
    assert_string_equal(d.res.repeat->sid, "SM123");
    assert_string_equal(d.res.repeat->status, "sent");
    /* Found stays found whatever a late owner says. */
    idempotency_unknown(idem, key, "owner-a");
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_FOUND);
    /* Another request with the key is still refused. */
    assert_int_equal(claim("fp2", "owner-b", 10000), POLICY_REFUSE);
}

static void test_found_before_the_owner_answers(void **state)
{
    /* The first status callback can come before Twilio's answer: the
     * owner's answer still settles the record, and meanwhile repeats wait
     * for it rather than answer from the callback. */
    assert_int_equal(claim("fp1", "owner-a", 60000), POLICY_GO);
    assert_int_equal(found("SM123"), 1);
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_IN_FLIGHT);
    struct policy_outcome o = {.code = 0, .body = (uint8_t *)"\x0a", .body_len = 1};
    idempotency_settle(idem, key, &o);
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_REPEAT);
    assert_int_equal(found("SM999"), 1); /* a settled record keeps its answer */
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_REPEAT);
    cmd("DEL", key, NULL, NULL);
    assert_int_equal(found("SM123"), 1); /* no record: nothing is made up */
    assert_string_equal(cmd("EXISTS", key, NULL, NULL), "0");
}

static void test_callback_sid_used_when_the_owner_cannot_tell(void **state)
{
    assert_int_equal(claim("fp1", "owner-a", 60000), POLICY_GO);
    assert_int_equal(found("SMcb"), 1); /* kept aside */
    idempotency_unknown(idem, key, "owner-a");
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_FOUND);
    assert_string_equal(d.res.repeat->sid, "SMcb");
    assert_int_equal(found("SMlater"), 1); /* found stays as found */
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_FOUND);
    assert_string_equal(d.res.repeat->sid, "SMcb");
    /* An owner that stops: the callback's SID once its lease is over. */
    cmd("DEL", key, NULL, NULL);
    assert_int_equal(claim("fp1", "owner-a", 100), POLICY_GO);
    assert_int_equal(found("SMcb2"), 1);
    usleep(150 * 1000);
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_FOUND);
    assert_string_equal(d.res.repeat->sid, "SMcb2");
}

static void test_absent_frees_only_that_claim(void **state)
{
    assert_int_equal(claim("fp1", "owner-a", 60000), POLICY_GO);
    read_record();
    int64_t t0 = facts.t0;
    /* Still pending under a live lease: not the resolver's to delete. */
    assert_int_equal(absent(t0), 0);
    idempotency_unknown(idem, key, "owner-a");
    assert_int_equal(absent(t0 - 1), 0); /* another claim than the one read */
    assert_int_equal(absent(t0), 1);
    assert_string_equal(cmd("EXISTS", key, NULL, NULL), "0");
    assert_int_equal(claim("fp1", "owner-b", 10000), POLICY_GO); /* may send again */
}

static void test_drop_waits_for_redis(void **state)
{
    assert_int_equal(claim("fp1", "owner-a", 60000), POLICY_GO);
    test_redis_stop(rs.pid);
    test_run_until(rs.base, &rs.up, 0, 3000);
    idempotency_drop(idem, key, "owner-a"); /* kept */
    rs.pid = test_redis_start(rs.port, NULL);
    test_run_until(rs.base, &rs.up, 1, 5000);
    /* The Redis restarted empty here; give it the claim back as it was. */
    assert_int_equal(claim("fp1", "owner-a", 60000), POLICY_GO);
    idempotency_redis_up(idem);
    assert_string_equal(cmd("EXISTS", key, NULL, NULL), "0");
}

#define T(fn) cmocka_unit_test_setup(fn, flush)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_is_caller_and_key),
        T(test_claim_settle_repeat),
        T(test_settled_unknown_repeats_unknown),
        T(test_only_the_owner_drops),
        T(test_drop_survives_lost_scripts),
        T(test_abandoned_claim_is_unknown_not_resent),
        T(test_abandoned_claim_is_resolving),
        T(test_owner_marks_unknown_then_found),
        T(test_found_before_the_owner_answers),
        T(test_callback_sid_used_when_the_owner_cannot_tell),
        T(test_absent_frees_only_that_claim),
        T(test_drop_waits_for_redis),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
