/* gRPC reflection: any bytes a client sends on the stream, answered from the
 * descriptor set compiled in. An answer must always be a response that
 * parses and echoes the request. */
#include <stdint.h>
#include <stdlib.h>

#include "core/error.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "rpc/descriptors.h"
#include "rpc/reflection.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct reflection *r;
    uint8_t *out = NULL;
    size_t n = 0;

    if (!r && reflection_new(descriptor_set, descriptor_set_len, &r))
        abort();
    if (reflection_answer(r, data, size, &out, &n) != CG_OK)
        return 0;
    Grpc__Reflection__V1__ServerReflectionResponse *resp =
        grpc__reflection__v1__server_reflection_response__unpack(NULL, n, out);
    if (!resp || !resp->original_request)
        abort();
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    free(out);
    return 0;
}
