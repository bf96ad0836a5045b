/* error.c: every value has a distinct name, a message and a gRPC status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "core/error.h"

static void test_table_complete(void **state)
{
    for (int i = 0; i < CG_ERROR_COUNT; i++) {
        assert_non_null(error_name(i));
        assert_true(strlen(error_message(i)) > 0);
        for (int k = 0; k < i; k++)
            assert_string_not_equal(error_name(i), error_name(k));
    }
    assert_int_equal(error_grpc_status(CG_OK), GRPC_STATUS_OK);
    assert_int_equal(error_grpc_status(CG_EREDIS), GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(error_grpc_status(CG_EINVAL), GRPC_STATUS_INVALID_ARGUMENT);
}

static void test_out_of_range(void **state)
{
    assert_string_equal(error_name(-1), "unknown");
    assert_string_equal(error_name(CG_ERROR_COUNT), "unknown");
    assert_int_equal(error_grpc_status(9999), GRPC_STATUS_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_complete),
        cmocka_unit_test(test_out_of_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
