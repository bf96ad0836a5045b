/* gRPC server reflection (grpc.reflection.v1 and v1alpha), so grpcurl-style
 * tools list and call every RPC without the .proto files. The index is built
 * once from rpc/descriptors.h and only read afterwards, so any queue thread
 * may answer from it without a lock. Every answer is made on the queue
 * thread the request arrived on: lookups in memory, no I/O. */
#ifndef COMMSGATE_RPC_REFLECTION_H
#define COMMSGATE_RPC_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

struct reflection;
struct rpc_method;

/* Indexes a serialized FileDescriptorSet (copied; `set` may go). CG_EINVAL
 * if it does not parse or a file imports one the set lacks. */
int reflection_new(const uint8_t *set, size_t len, struct reflection **out);
/* Clears *r; NULL is a no-op. */
void reflection_free(struct reflection **r);

/* The answer to one serialized ServerReflectionRequest, serialized into
 * *out (malloc'd, the caller frees it). A question it cannot answer (an
 * unknown file or symbol) is an answer carrying an error_response, as the
 * protocol has it; only a request that does not parse is CG_EINVAL. */
int reflection_answer(const struct reflection *r, const uint8_t *req, size_t len, uint8_t **out,
                      size_t *outlen);

/* Fully qualified names of the services the set defines, in its order. */
size_t reflection_service_count(const struct reflection *r);
const char *reflection_service(const struct reflection *r, size_t i);

/* Fills out[0..1] with ServerReflectionInfo of v1 and v1alpha, answered
 * from r (which must outlive the server); returns 2. Open to every caller:
 * it tells no more than the published .proto files. */
size_t reflection_methods(const struct reflection *r, struct rpc_method *out);

#endif
