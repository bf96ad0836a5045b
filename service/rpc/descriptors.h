/* The FileDescriptorSet (google.protobuf) of every .proto file the served
 * services use, imports included: made by protoc at build time and compiled
 * in (proto/CMakeLists.txt), so reflection describes exactly this binary's
 * contract. */
#ifndef COMMSGATE_RPC_DESCRIPTORS_H
#define COMMSGATE_RPC_DESCRIPTORS_H

#include <stddef.h>

extern const unsigned char descriptor_set[];
extern const size_t descriptor_set_len;

#endif
