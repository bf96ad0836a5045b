/* rpc/reflection.c: the index built from the descriptor set compiled into
 * the daemon, and the answer to each kind of request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "rpc/descriptors.h"
#include "rpc/reflection.h"

typedef Grpc__Reflection__V1__ServerReflectionRequest request;
typedef Grpc__Reflection__V1__ServerReflectionResponse response;

static int setup(void **state)
{
    struct reflection *r = NULL;
    assert_int_equal(reflection_new(descriptor_set, descriptor_set_len, &r), CG_OK);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    struct reflection *r = *state;
    reflection_free(&r);
    assert_null(r);
    return 0;
}

static response *ask(const struct reflection *r, request *req)
{
    uint8_t buf[1024], *out = NULL;
    size_t n = protobuf_c_message_get_packed_size(&req->base), outlen = 0;
    assert_true(n <= sizeof(buf));
    protobuf_c_message_pack(&req->base, buf);
    assert_int_equal(reflection_answer(r, buf, n, &out, &outlen), CG_OK);
    response *resp = grpc__reflection__v1__server_reflection_response__unpack(NULL, outlen, out);
    free(out);
    assert_non_null(resp);
    /* The protocol echoes the request. */
    assert_non_null(resp->original_request);
    assert_int_equal(resp->original_request->message_request_case, req->message_request_case);
    return resp;
}

/* The names of the files in a file_descriptor_response, in order. */
static size_t file_names(const response *resp, char names[][64], size_t max)
{
    assert_int_equal(resp->message_response_case,
                     GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
    const Grpc__Reflection__V1__FileDescriptorResponse *f = resp->file_descriptor_response;
    assert_true(f->n_file_descriptor_proto <= max);
    for (size_t i = 0; i < f->n_file_descriptor_proto; i++) {
        Google__Protobuf__FileDescriptorProto *fd = google__protobuf__file_descriptor_proto__unpack(
            NULL, f->file_descriptor_proto[i].len, f->file_descriptor_proto[i].data);
        assert_non_null(fd);
        snprintf(names[i], 64, "%s", fd->name);
        google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
    }
    return f->n_file_descriptor_proto;
}

static void lists_every_served_service(void **state)
{
    request req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    req.list_services = "*";
    response *resp = ask(*state, &req);
    assert_int_equal(resp->message_response_case,
                     GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
    const char *want[] = {"commsgate.v1.MessagingService", "grpc.health.v1.Health",
                          "grpc.reflection.v1.ServerReflection",
                          "grpc.reflection.v1alpha.ServerReflection"};
    assert_int_equal(resp->list_services_response->n_service, 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(resp->list_services_response->service[i]->name, want[i]);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

static void a_method_brings_its_file_and_imports(void **state)
{
    char names[8][64];
    request req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    const char *symbols[] = {"commsgate.v1.MessagingService", "commsgate.v1.MessagingService.SendSMS",
                             ".commsgate.v1.GetMessageResponse", "commsgate.v1.Channel"};
    for (size_t i = 0; i < 4; i++) {
        req.file_containing_symbol = (char *)symbols[i];
        response *resp = ask(*state, &req);
        size_t n = file_names(resp, names, 8);
        assert_int_equal(n, 2);
        assert_string_equal(names[0], "commsgate/v1/messaging.proto");
        assert_string_equal(names[1], "google/protobuf/timestamp.proto");
        grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    }
}

static void nested_and_other_files_are_found(void **state)
{
    char names[8][64];
    request req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    req.file_containing_symbol = "grpc.health.v1.HealthCheckResponse.ServingStatus";
    response *resp = ask(*state, &req);
    assert_int_equal(file_names(resp, names, 8), 1);
    assert_string_equal(names[0], "grpc/health/v1/health.proto");
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);

    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    req.file_by_filename = "google/protobuf/timestamp.proto";
    resp = ask(*state, &req);
    assert_int_equal(file_names(resp, names, 8), 1);
    assert_string_equal(names[0], "google/protobuf/timestamp.proto");
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

static void unknown_names_are_not_found_answers(void **state)
{
    request req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    Grpc__Reflection__V1__ExtensionRequest ext = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
    struct {
        int which;
        const char *value;
    } cases[] = {
        {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL,
         "commsgate.v1.MessagingService.NoSuch"},
        {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL,
         "commsgate.v1"}, /* a package is no symbol */
        {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME,
         "commsgate/v2/messaging.proto"},
        {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE,
         "commsgate.v1.NoSuch"},
        {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION,
         NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        req.message_request_case = cases[i].which;
        req.file_containing_symbol = (char *)cases[i].value; /* one union for the strings */
        if (!cases[i].value) {
            ext.containing_type = "commsgate.v1.SendSMSRequest";
            ext.extension_number = 100;
            req.file_containing_extension = &ext;
        }
        response *resp = ask(*state, &req);
        assert_int_equal(resp->message_response_case,
                         GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
        assert_int_equal(resp->error_response->error_code, 5 /* NOT_FOUND */);
        if (cases[i].value)
            assert_non_null(strstr(resp->error_response->error_message, cases[i].value));
        grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    }
}

static void known_types_have_no_extensions(void **state)
{
    request req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
    req.all_extension_numbers_of_type = "commsgate.v1.SendSMSRequest";
    response *resp = ask(*state, &req);
    assert_int_equal(resp->message_response_case,
                     GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE);
    assert_string_equal(resp->all_extension_numbers_response->base_type_name,
                        "commsgate.v1.SendSMSRequest");
    assert_int_equal(resp->all_extension_numbers_response->n_extension_number, 0);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

static void an_empty_request_is_an_error_answer(void **state)
{
    request req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    response *resp = ask(*state, &req);
    assert_int_equal(resp->message_response_case,
                     GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
    assert_int_equal(resp->error_response->error_code, 3 /* INVALID_ARGUMENT */);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

static void garbage_is_refused(void **state)
{
    const uint8_t junk[] = {0x0a, 0x7f, 'x'}; /* a string field longer than the bytes */
    uint8_t *out = NULL;
    size_t n = 0;
    assert_int_equal(reflection_answer(*state, junk, sizeof(junk), &out, &n), CG_EINVAL);
    assert_null(out);
}

/* protobuf-c keeps fields it does not know as they came, even field 0,
 * which no parser takes back: the echo must leave them out, or the whole
 * answer is unreadable (found by fuzz_reflection). */
static void unknown_fields_are_not_echoed(void **state)
{
    const uint8_t req[] = {0x80, 0x00, 0x30,             /* field 0, varint 0x30 */
                           0x3a, 0x00,                   /* list_services = "" */
                           0x2a, 0x03, 0x80, 0x00, 0x30}; /* an ExtensionRequest with it */
    const size_t lens[] = {5, 3, sizeof(req) - 5};
    const uint8_t *starts[] = {req, req, req + 5};
    for (size_t i = 0; i < 3; i++) {
        uint8_t *out = NULL;
        size_t n = 0;
        assert_int_equal(reflection_answer(*state, starts[i], lens[i], &out, &n), CG_OK);
        response *resp = grpc__reflection__v1__server_reflection_response__unpack(NULL, n, out);
        assert_non_null(resp);
        grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
        free(out);
    }
}

static void a_set_missing_an_import_is_refused(void **state)
{
    (void)state;
    /* Only messaging.proto, without the timestamp.proto it imports. */
    Google__Protobuf__FileDescriptorSet *set =
        google__protobuf__file_descriptor_set__unpack(NULL, descriptor_set_len, descriptor_set);
    assert_non_null(set);
    Google__Protobuf__FileDescriptorSet one = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    for (size_t i = 0; i < set->n_file; i++)
        if (strcmp(set->file[i]->name, "commsgate/v1/messaging.proto") == 0)
            one.file = &set->file[i];
    assert_non_null(one.file);
    one.n_file = 1;
    size_t n = protobuf_c_message_get_packed_size(&one.base);
    uint8_t *buf = malloc(n);
    protobuf_c_message_pack(&one.base, buf);
    struct reflection *r = NULL;
    assert_int_equal(reflection_new(buf, n, &r), CG_EINVAL);
    assert_null(r);
    free(buf);
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    assert_int_equal(reflection_new((const uint8_t *)"\xff", 1, &r), CG_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lists_every_served_service),
        cmocka_unit_test(a_method_brings_its_file_and_imports),
        cmocka_unit_test(nested_and_other_files_are_found),
        cmocka_unit_test(unknown_names_are_not_found_answers),
        cmocka_unit_test(known_types_have_no_extensions),
        cmocka_unit_test(an_empty_request_is_an_error_answer),
        cmocka_unit_test(garbage_is_refused),
        cmocka_unit_test(unknown_fields_are_not_echoed),
        cmocka_unit_test(a_set_missing_an_import_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
