/* reason.c: every reason a caller can see has a distinct name and the status
 * the README documents for it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "core/reason.h"

static void test_names_distinct(void **state)
{
    assert_null(reason_name(REASON_NONE));
    for (int i = 1; i < REASON_COUNT; i++) {
        assert_non_null(reason_name(i));
        for (int k = 1; k < i; k++)
            assert_string_not_equal(reason_name(i), reason_name(k));
    }
}

static void test_documented_statuses(void **state)
{
    assert_int_equal(reason_status(REASON_OPTED_OUT), GRPC_STATUS_FAILED_PRECONDITION);
    assert_int_equal(reason_status(REASON_WHATSAPP_WINDOW_CLOSED), GRPC_STATUS_FAILED_PRECONDITION);
    assert_int_equal(reason_status(REASON_VERIFY_SEND_LIMIT), GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(reason_status(REASON_ACCOUNT_RATE_LIMITED), GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(reason_status(REASON_IDEMPOTENCY_IN_FLIGHT), GRPC_STATUS_ABORTED);
    assert_int_equal(reason_status(REASON_IDEMPOTENCY_KEY_REUSED), GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(reason_status(REASON_REDIS_UNAVAILABLE), GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(reason_status(REASON_DEADLINE), GRPC_STATUS_DEADLINE_EXCEEDED);
    /* Twilio's refusals take their status from Twilio's error table. */
    assert_int_equal(reason_status(REASON_TWILIO_ERROR), GRPC_STATUS_OK);
    assert_string_equal(reason_name(REASON_OUTCOME_UNKNOWN), "OUTCOME_UNKNOWN");
    /* Not UNAVAILABLE, which retry policies resend blindly. */
    assert_int_equal(reason_status(REASON_OUTCOME_UNKNOWN), GRPC_STATUS_UNKNOWN);
}

static void test_out_of_range(void **state)
{
    assert_null(reason_name(REASON_COUNT));
    assert_int_equal(reason_status(REASON_COUNT), GRPC_STATUS_INTERNAL);
    assert_int_equal(reason_retry_ms(REASON_COUNT), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_distinct),
        cmocka_unit_test(test_documented_statuses),
        cmocka_unit_test(test_out_of_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
