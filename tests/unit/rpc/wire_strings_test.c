/* rpc/wire_strings.c: a NUL inside any string field, nested or not, is
 * found on the wire (protobuf-c would have cut the string there). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "commsgate/v1/messaging.pb-c.h"
#include "rpc/wire_strings.h"

/* Appends field `num` (wire type 2) holding n bytes of s. */
static size_t put(uint8_t *out, size_t at, unsigned num, const char *s, size_t n)
{
    out[at++] = (uint8_t)(num << 3 | 2);
    out[at++] = (uint8_t)n;
    memcpy(out + at, s, n);
    return at + n;
}

static int check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, char *field)
{
    /* What protobuf-c accepts is what is checked. */
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, buf);
    assert_non_null(m);
    protobuf_c_message_free_unpacked(m, NULL);
    return wire_strings_nul(d, buf, len, field, 128);
}

static void test_body_with_a_nul(void **state)
{
    uint8_t buf[128];
    char field[128];
    size_t n = put(buf, 0, 1, "+14155550100", 12);
    n = put(buf, n, 2, "Hi\0 secret", 10);
    assert_int_equal(check(&commsgate__v1__send_smsrequest__descriptor, buf, n, field), 1);
    assert_string_equal(field, "body");
    /* The same without the NUL, plus an unknown varint field (15). */
    n = put(buf, 0, 1, "+14155550100", 12);
    n = put(buf, n, 2, "Hi secret", 9);
    buf[n++] = 15 << 3 | 0;
    buf[n++] = 0x96;
    buf[n++] = 0x01;
    assert_int_equal(check(&commsgate__v1__send_smsrequest__descriptor, buf, n, field), 0);
    assert_string_equal(field, "");
}

static void test_nested_and_map_fields(void **state)
{
    uint8_t say[64], buf[128], entry[64];
    char field[128];
    /* PlaceCallRequest.say (5) { text (1) } */
    size_t s = put(say, 0, 1, "hello\0world", 11);
    size_t n = put(buf, 0, 1, "+14155550100", 12);
    n = put(buf, n, 5, (const char *)say, s);
    assert_int_equal(check(&commsgate__v1__place_call_request__descriptor, buf, n, field), 1);
    assert_string_equal(field, "say.text");
    /* SendWhatsAppRequest.content_variables (4): map entries {key 1, value 2} */
    size_t e = put(entry, 0, 1, "1", 1);
    e = put(entry, e, 2, "Jo\0hn", 5);
    n = put(buf, 0, 1, "+14155550100", 12);
    n = put(buf, n, 4, (const char *)entry, e);
    assert_int_equal(check(&commsgate__v1__send_whats_app_request__descriptor, buf, n, field), 1);
    assert_string_equal(field, "content_variables.value");
    /* repeated string media_urls (5) */
    n = put(buf, 0, 5, "https://a.example/x", 19);
    n = put(buf, n, 5, "https://b.example/\0", 19);
    assert_int_equal(check(&commsgate__v1__send_whats_app_request__descriptor, buf, n, field), 1);
    assert_string_equal(field, "media_urls");
}

static void test_bytes_that_are_not_a_message(void **state)
{
    char field[128];
    const uint8_t truncated[] = {0x12, 0x05, 'a', 'b'};
    const uint8_t bad_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    const uint8_t group[] = {0x0b, 0x0c};
    assert_int_equal(wire_strings_nul(&commsgate__v1__send_smsrequest__descriptor, truncated,
                                      sizeof(truncated), field, sizeof(field)),
                     -1);
    assert_int_equal(wire_strings_nul(&commsgate__v1__send_smsrequest__descriptor, bad_varint,
                                      sizeof(bad_varint), field, sizeof(field)),
                     -1);
    assert_int_equal(wire_strings_nul(&commsgate__v1__send_smsrequest__descriptor, group,
                                      sizeof(group), field, sizeof(field)),
                     -1);
    assert_int_equal(wire_strings_nul(&commsgate__v1__send_smsrequest__descriptor, NULL, 0, field,
                                      sizeof(field)),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_with_a_nul),
        cmocka_unit_test(test_nested_and_map_fields),
        cmocka_unit_test(test_bytes_that_are_not_a_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
