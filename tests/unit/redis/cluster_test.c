/* cluster.c's key hashing, against the cluster specification's own
 * examples: the CRC16 check value, and which part of a key a {hash tag}
 * makes count. (Routing, redirects and the slot map run against a real
 * cluster in tests/integration/cluster_test.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "redis/cluster.h"

static unsigned slot(const char *key)
{
    return cluster_slot(key, strlen(key));
}

static void test_crc16_check_value(void **state)
{
    assert_int_equal(slot("123456789"), 0x31C3 % 16384); /* XMODEM's check value */
}

static void test_hash_tags(void **state)
{
    assert_int_equal(slot("{user1000}.following"), slot("user1000"));
    assert_int_equal(slot("{user1000}.followers"), slot("user1000"));
    assert_int_equal(slot("foo{}{bar}"), cluster_slot("foo{}{bar}", 10)); /* empty: all */
    assert_int_not_equal(slot("foo{}{bar}"), slot("bar"));
    assert_int_equal(slot("foo{{bar}}zap"), slot("{bar"));
    assert_int_equal(slot("foo{bar}{zap}"), slot("bar"));
    assert_int_equal(slot("cg:{+14155550100}:optout"), slot("cg:{+14155550100}:wa"));
    assert_true(slot("cg:{+14155550100}:optout") < 16384);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_check_value),
        cmocka_unit_test(test_hash_tags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
