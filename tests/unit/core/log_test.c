/* log.c: every line is one JSON object with time, level and event, levels
 * filter, and hostile values stay inside their string. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

static int fds[2];

static int setup(void **state)
{
    assert_int_equal(pipe(fds), 0);
    log_set_fd(fds[1]);
    log_set_level(LOG_LEVEL_DEBUG);
    return 0;
}

static int teardown(void **state)
{
    log_set_fd(2);
    log_set_level(LOG_LEVEL_INFO);
    close(fds[0]);
    close(fds[1]);
    return 0;
}

/* Reads what was logged so far (lines are small; one read suffices). */
static char *drain(void)
{
    static char buf[8192];
    close(fds[1]);
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    assert_int_equal(pipe(fds), 0);
    log_set_fd(fds[1]);
    return buf;
}

static void test_line_shape(void **state)
{
    log_event(LOG_LEVEL_INFO, "ready", json_pack("{s:i}", "port", 50051));
    char *out = drain();
    size_t len = strlen(out);
    assert_true(len > 0);
    assert_int_equal(out[len - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + len - 1);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "event")), "ready");
    assert_int_equal(json_integer_value(json_object_get(j, "port")), 50051);
    const char *t = json_string_value(json_object_get(j, "time"));
    assert_non_null(t);
    assert_int_equal(strlen(t), strlen("2026-01-01T00:00:00.000Z"));
    assert_int_equal(t[strlen(t) - 1], 'Z');
    json_decref(j);
}

static void test_level_filter(void **state)
{
    log_set_level(LOG_LEVEL_WARN);
    log_info("quiet", "not shown %d", 1);
    log_warn("loud", "shown %d", 2);
    char *out = drain();
    assert_null(strstr(out, "quiet"));
    assert_non_null(strstr(out, "\"msg\":\"shown 2\""));
    enum log_level l;
    assert_int_equal(log_level_parse("error", &l), 0);
    assert_int_equal(l, LOG_LEVEL_ERROR);
    assert_int_equal(log_level_parse("verbose", &l), -1);
}

static void test_escaping(void **state)
{
    log_info("evil", "a\"b\nc\\d");
    char *out = drain();
    /* Exactly one line, and it parses back to the same text. */
    assert_int_equal(strchr(out, '\n'), out + strlen(out) - 1);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "a\"b\nc\\d");
    json_decref(j);
}

static void test_fields_cannot_override_core_keys(void **state)
{
    log_event(LOG_LEVEL_ERROR, "real", json_pack("{s:s}", "event", "forged"));
    char *out = drain();
    json_t *j = json_loads(out, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "event")), "real");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fields_cannot_override_core_keys, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
