/* gRPC server reflection. The index: every file of the descriptor set,
 * serialized on its own (what the protocol sends), the files it imports,
 * and every symbol a client may ask about (services, methods, messages,
 * enums, nested ones too) with the file that defines it. */
#include "rpc/reflection.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "loop/loop.h"
#include "rpc/server.h"

typedef Grpc__Reflection__V1__ServerReflectionRequest refl_request;
typedef Grpc__Reflection__V1__ServerReflectionResponse refl_response;

struct refl_file {
    const char *name; /* in the unpacked set */
    uint8_t *bytes;   /* this file's FileDescriptorProto, serialized */
    size_t len;
    size_t *deps; /* indexes of the files it imports */
    size_t ndeps;
};

struct refl_symbol {
    char *name; /* fully qualified, no leading dot */
    size_t file;
};

struct reflection {
    Google__Protobuf__FileDescriptorSet *set;
    struct refl_file *files;
    size_t nfiles;
    struct refl_symbol *symbols;
    size_t nsymbols, cap;
    const char **services;
    size_t nservices;
};

static int add_symbol(struct reflection *r, const char *scope, const char *name, size_t file)
{
    if (r->nsymbols == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        struct refl_symbol *s = realloc(r->symbols, cap * sizeof(*s));
        if (!s)
            return CG_ENOMEM;
        r->symbols = s;
        r->cap = cap;
    }
    size_t n = strlen(scope) + 1 + strlen(name) + 1;
    char *full = malloc(n);
    if (!full)
        return CG_ENOMEM;
    snprintf(full, n, "%s%s%s", scope, *scope ? "." : "", name);
    r->symbols[r->nsymbols++] = (struct refl_symbol){full, file};
    return CG_OK;
}

static int add_enum(struct reflection *r, const char *scope,
                    const Google__Protobuf__EnumDescriptorProto *e, size_t file)
{
    return add_symbol(r, scope, e->name, file);
}

/* A message, and what is nested in it, under its own name. */
static int add_message(struct reflection *r, const char *scope,
                       const Google__Protobuf__DescriptorProto *m, size_t file)
{
    int rc = add_symbol(r, scope, m->name, file);
    if (rc)
        return rc;
    const char *inner = r->symbols[r->nsymbols - 1].name;
    for (size_t i = 0; i < m->n_nested_type && !rc; i++)
        rc = add_message(r, inner, m->nested_type[i], file);
    for (size_t i = 0; i < m->n_enum_type && !rc; i++)
        rc = add_enum(r, inner, m->enum_type[i], file);
    return rc;
}

static int add_service(struct reflection *r, const char *scope,
                       const Google__Protobuf__ServiceDescriptorProto *sd, size_t file)
{
    int rc = add_symbol(r, scope, sd->name, file);
    if (rc)
        return rc;
    const char *full = r->symbols[r->nsymbols - 1].name;
    const char **s = realloc(r->services, (r->nservices + 1) * sizeof(*s));
    if (!s)
        return CG_ENOMEM;
    r->services = s;
    r->services[r->nservices++] = full;
    for (size_t i = 0; i < sd->n_method && !rc; i++)
        rc = add_symbol(r, full, sd->method[i]->name, file);
    return rc;
}

static long find_file(const struct reflection *r, const char *name)
{
    for (size_t i = 0; i < r->nfiles; i++)
        if (strcmp(r->files[i].name, name) == 0)
            return (long)i;
    return -1;
}

static int index_file(struct reflection *r, size_t i)
{
    Google__Protobuf__FileDescriptorProto *f = r->set->file[i];
    struct refl_file *rf = &r->files[i];
    const char *pkg = f->package ? f->package : "";
    int rc = CG_OK;

    rf->len = protobuf_c_message_get_packed_size(&f->base);
    rf->bytes = malloc(rf->len ? rf->len : 1);
    rf->deps = calloc(f->n_dependency ? f->n_dependency : 1, sizeof(*rf->deps));
    if (!rf->bytes || !rf->deps)
        return CG_ENOMEM;
    protobuf_c_message_pack(&f->base, rf->bytes);
    for (size_t d = 0; d < f->n_dependency; d++) {
        long at = find_file(r, f->dependency[d]);
        if (at < 0)
            return CG_EINVAL; /* protoc --include_imports puts every import in */
        rf->deps[rf->ndeps++] = (size_t)at;
    }
    for (size_t k = 0; k < f->n_message_type && !rc; k++)
        rc = add_message(r, pkg, f->message_type[k], i);
    for (size_t k = 0; k < f->n_enum_type && !rc; k++)
        rc = add_enum(r, pkg, f->enum_type[k], i);
    for (size_t k = 0; k < f->n_service && !rc; k++)
        rc = add_service(r, pkg, f->service[k], i);
    return rc;
}

int reflection_new(const uint8_t *set, size_t len, struct reflection **out)
{
    struct reflection *r = calloc(1, sizeof(*r));
    int rc = CG_ENOMEM;

    if (!r)
        return CG_ENOMEM;
    r->set = google__protobuf__file_descriptor_set__unpack(NULL, len, set);
    if (!r->set) {
        rc = CG_EINVAL;
        goto fail;
    }
    r->nfiles = r->set->n_file;
    r->files = calloc(r->nfiles ? r->nfiles : 1, sizeof(*r->files));
    if (!r->files)
        goto fail;
    for (size_t i = 0; i < r->nfiles; i++)
        r->files[i].name = r->set->file[i]->name ? r->set->file[i]->name : "";
    for (size_t i = 0; i < r->nfiles; i++)
        if ((rc = index_file(r, i)))
            goto fail;
    *out = r;
    return CG_OK;
fail:
    reflection_free(&r);
    return rc;
}

void reflection_free(struct reflection **rp)
{
    struct reflection *r = *rp;
    if (!r)
        return;
    for (size_t i = 0; r->files && i < r->nfiles; i++) {
        free(r->files[i].bytes);
        free(r->files[i].deps);
    }
    for (size_t i = 0; i < r->nsymbols; i++)
        free(r->symbols[i].name);
    free(r->files);
    free(r->symbols);
    free(r->services);
    if (r->set)
        google__protobuf__file_descriptor_set__free_unpacked(r->set, NULL);
    free(r);
    *rp = NULL;
}

size_t reflection_service_count(const struct reflection *r)
{
    return r->nservices;
}

const char *reflection_service(const struct reflection *r, size_t i)
{
    return i < r->nservices ? r->services[i] : NULL;
}

/* The file, then everything it imports, each once. */
static void collect(const struct reflection *r, size_t file, char *seen, ProtobufCBinaryData *out,
                    size_t *n)
{
    if (seen[file])
        return;
    seen[file] = 1;
    out[(*n)++] = (ProtobufCBinaryData){r->files[file].len, r->files[file].bytes};
    for (size_t d = 0; d < r->files[file].ndeps; d++)
        collect(r, r->files[file].deps[d], seen, out, n);
}

static long symbol_file(const struct reflection *r, const char *name)
{
    if (*name == '.')
        name++;
    for (size_t i = 0; i < r->nsymbols; i++)
        if (strcmp(r->symbols[i].name, name) == 0)
            return (long)r->symbols[i].file;
    return -1;
}

int reflection_answer(const struct reflection *r, const uint8_t *req_bytes, size_t len,
                      uint8_t **out, size_t *outlen)
{
    refl_request *req = grpc__reflection__v1__server_reflection_request__unpack(NULL, len,
                                                                                  req_bytes);
    refl_response resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
    Grpc__Reflection__V1__FileDescriptorResponse files =
        GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
    Grpc__Reflection__V1__ListServiceResponse list = GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
    Grpc__Reflection__V1__ExtensionNumberResponse ext =
        GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
    Grpc__Reflection__V1__ErrorResponse error = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
    Grpc__Reflection__V1__ServiceResponse *svc = NULL, **svcp = NULL;
    ProtobufCBinaryData *blobs = NULL;
    char *seen = NULL, msg[300];
    long file = -1;
    int rc = CG_ENOMEM;

    if (!req)
        return CG_EINVAL;
    resp.valid_host = req->host;
    resp.original_request = req;
    msg[0] = '\0';
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        svc = calloc(r->nservices + 1, sizeof(*svc));
        svcp = calloc(r->nservices + 1, sizeof(*svcp));
        if (!svc || !svcp)
            goto done;
        for (size_t i = 0; i < r->nservices; i++) {
            grpc__reflection__v1__service_response__init(&svc[i]);
            svc[i].name = (char *)r->services[i];
            svcp[i] = &svc[i];
        }
        list.n_service = r->nservices;
        list.service = svcp;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
        resp.list_services_response = &list;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        file = find_file(r, req->file_by_filename);
        if (file < 0)
            snprintf(msg, sizeof(msg), "no file %s", req->file_by_filename);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        file = symbol_file(r, req->file_containing_symbol);
        if (file < 0)
            snprintf(msg, sizeof(msg), "no symbol %s", req->file_containing_symbol);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        snprintf(msg, sizeof(msg), "no extensions are defined");
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        /* A known message simply has none. */
        if (symbol_file(r, req->all_extension_numbers_of_type) < 0) {
            snprintf(msg, sizeof(msg), "no type %s", req->all_extension_numbers_of_type);
            break;
        }
        ext.base_type_name = req->all_extension_numbers_of_type;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
        resp.all_extension_numbers_response = &ext;
        break;
    default:
        snprintf(msg, sizeof(msg), "the request asks nothing this server knows");
        break;
    }
    if (file >= 0) {
        blobs = calloc(r->nfiles, sizeof(*blobs));
        seen = calloc(r->nfiles, 1);
        if (!blobs || !seen)
            goto done;
        collect(r, (size_t)file, seen, blobs, &files.n_file_descriptor_proto);
        files.file_descriptor_proto = blobs;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
        resp.file_descriptor_response = &files;
    } else if (msg[0]) {
        error.error_code = req->message_request_case ==
                                   GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET
                               ? GRPC_STATUS_INVALID_ARGUMENT
                               : GRPC_STATUS_NOT_FOUND;
        error.error_message = msg;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
        resp.error_response = &error;
    }
    /* The echo leaves out fields this server does not know: protobuf-c keeps
     * them as they came, even ones no parser accepts back (field 0, found by
     * fuzz_reflection), which would make the whole answer unreadable. */
    Grpc__Reflection__V1__ExtensionRequest *ereq =
        req->message_request_case ==
                GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION
            ? req->file_containing_extension
            : NULL;
    unsigned unknown = req->base.n_unknown_fields, eunknown = ereq ? ereq->base.n_unknown_fields : 0;
    req->base.n_unknown_fields = 0;
    if (ereq)
        ereq->base.n_unknown_fields = 0;
    *outlen = protobuf_c_message_get_packed_size(&resp.base);
    *out = malloc(*outlen ? *outlen : 1);
    if (*out)
        protobuf_c_message_pack(&resp.base, *out);
    req->base.n_unknown_fields = unknown; /* so free_unpacked frees them */
    if (ereq)
        ereq->base.n_unknown_fields = eunknown;
    if (!*out)
        goto done;
    rc = CG_OK;
done:
    free(svc);
    free(svcp);
    free(blobs);
    free(seen);
    grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
    return rc;
}

/* The stream: read a request, send its answer, read the next; one
 * operation in flight at a time, so the callbacks below never overlap for
 * one call. All on queue threads. */

static void on_call(struct rpc_call *call, const uint8_t *req, size_t len)
{
    (void)req;
    (void)len;
    LOOP_ASSERT_NOT_LOOP();
    if (rpc_call_recv(call))
        rpc_call_finish(call, GRPC_STATUS_INTERNAL, "cannot read the stream", NULL);
}

static void on_message(struct rpc_call *call, const uint8_t *msg, size_t len, int ok)
{
    const struct reflection *r = rpc_call_method(call)->data;
    uint8_t *answer = NULL;
    size_t n = 0;

    LOOP_ASSERT_NOT_LOOP();
    if (!ok) {
        rpc_call_release(call); /* the call is broken (the server shuts down) */
        return;
    }
    if (!msg) {
        /* The client is done, or gone (a cancel also ends the stream). */
        if (rpc_call_is_cancelled(call))
            rpc_call_release(call);
        else
            rpc_call_finish(call, GRPC_STATUS_OK, NULL, NULL);
        return;
    }
    int rc = reflection_answer(r, msg, len, &answer, &n);
    if (rc) {
        rpc_call_finish(call, rc == CG_EINVAL ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_INTERNAL,
                        rc == CG_EINVAL ? "not a ServerReflectionRequest" : "out of memory", NULL);
        return;
    }
    if (rpc_call_send_packed(call, answer, n))
        rpc_call_release(call);
    free(answer);
}

static void on_sent(struct rpc_call *call, int ok)
{
    LOOP_ASSERT_NOT_LOOP();
    if (!ok)
        rpc_call_release(call);
    else if (rpc_call_recv(call))
        rpc_call_finish(call, GRPC_STATUS_INTERNAL, "cannot read the stream", NULL);
}

size_t reflection_methods(const struct reflection *r, struct rpc_method *out)
{
    static const char *const paths[] = {
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    };
    for (size_t i = 0; i < 2; i++)
        out[i] = (struct rpc_method){.path = paths[i],
                                     .on_call = on_call,
                                     .on_message = on_message,
                                     .on_sent = on_sent,
                                     .data = r,
                                     .open = 1,
                                     .client_streams = 1};
    return 2;
}
