/* errors.c: the codes commsgate must handle map as documented. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "twilio/errors.h"

static void test_required_codes(void **state)
{
    static const struct {
        int code;
        grpc_status_code status;
        int retryable;
    } want[] = {
        {21211, GRPC_STATUS_INVALID_ARGUMENT, 0},   {21212, GRPC_STATUS_INVALID_ARGUMENT, 0},
        {21408, GRPC_STATUS_PERMISSION_DENIED, 0},  {21610, GRPC_STATUS_FAILED_PRECONDITION, 0},
        {21612, GRPC_STATUS_FAILED_PRECONDITION, 0}, {21614, GRPC_STATUS_INVALID_ARGUMENT, 0},
        {30003, GRPC_STATUS_UNAVAILABLE, 0},        {30005, GRPC_STATUS_NOT_FOUND, 0},
        {30006, GRPC_STATUS_FAILED_PRECONDITION, 0}, {20429, GRPC_STATUS_RESOURCE_EXHAUSTED, 1},
        {30429, GRPC_STATUS_RESOURCE_EXHAUSTED, 1}, {60200, GRPC_STATUS_INVALID_ARGUMENT, 0},
        {60202, GRPC_STATUS_RESOURCE_EXHAUSTED, 0}, {60203, GRPC_STATUS_RESOURCE_EXHAUSTED, 0},
        {60205, GRPC_STATUS_FAILED_PRECONDITION, 0}, {60223, GRPC_STATUS_FAILED_PRECONDITION, 0},
        {63016, GRPC_STATUS_FAILED_PRECONDITION, 0}, {63018, GRPC_STATUS_RESOURCE_EXHAUSTED, 1},
        {63025, GRPC_STATUS_RESOURCE_EXHAUSTED, 0}, {63038, GRPC_STATUS_RESOURCE_EXHAUSTED, 0},
        {20003, GRPC_STATUS_INTERNAL, 0},           {20404, GRPC_STATUS_NOT_FOUND, 0},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct twilio_error_info *e = twilio_error_lookup(want[i].code);
        if (!e)
            fail_msg("code %d missing from the table", want[i].code);
        if (e->status != want[i].status || e->retryable != want[i].retryable)
            fail_msg("code %d: status %d retryable %d", want[i].code, e->status, e->retryable);
        assert_non_null(e->message);
        assert_true(e->message[0] != '\0');
    }
}

static void test_unknown_codes_fall_back_by_http_status(void **state)
{
    assert_null(twilio_error_lookup(99999));
    assert_int_equal(twilio_error_status_for_http(401), GRPC_STATUS_INTERNAL);
    assert_int_equal(twilio_error_status_for_http(404), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(twilio_error_status_for_http(429), GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(twilio_error_status_for_http(400), GRPC_STATUS_FAILED_PRECONDITION);
    assert_int_equal(twilio_error_status_for_http(503), GRPC_STATUS_UNAVAILABLE);
}

/* What each code does is data: the families list the actions they honour. */
static void test_actions_and_reasons(void **state)
{
    static const struct {
        int code;
        enum twilio_action action;
        enum reason reason;
        int64_t retry_after_ms;
    } want[] = {
        {21610, TWILIO_ACTION_OPT_OUT, REASON_OPTED_OUT, -1},
        {63016, TWILIO_ACTION_CLOSE_WINDOW, REASON_WHATSAPP_WINDOW_CLOSED, -1},
        {20404, TWILIO_ACTION_NOT_FOUND, REASON_VERIFICATION_NOT_FOUND, -1},
        {60203, TWILIO_ACTION_NONE, REASON_VERIFY_SEND_LIMIT, 600000},
        {60202, TWILIO_ACTION_NONE, REASON_VERIFY_CHECK_LIMIT, -1},
        {21211, TWILIO_ACTION_NONE, REASON_TWILIO_ERROR, -1},
        {20429, TWILIO_ACTION_NONE, REASON_TWILIO_ERROR, -1},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct twilio_error_info *e = twilio_error_lookup(want[i].code);
        assert_non_null(e);
        assert_int_equal(e->action, want[i].action);
        assert_int_equal(e->reason, want[i].reason);
        assert_int_equal(e->retry_after_ms, want[i].retry_after_ms);
        assert_ptr_equal(twilio_error_for(want[i].code, 400), e);
    }
    /* A code the table does not know: a 404 still means not found. */
    assert_int_equal(twilio_error_for(0, 404)->action, TWILIO_ACTION_NOT_FOUND);
    assert_null(twilio_error_for(0, 400));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_required_codes),
        cmocka_unit_test(test_actions_and_reasons),
        cmocka_unit_test(test_unknown_codes_fall_back_by_http_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
