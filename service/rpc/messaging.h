/* commsgate.v1.Messaging: the method table. Each RPC family's policy lives
 * in its own rpc_<family>.c; until a family is built, its methods take the
 * full path (queue thread -> loop thread -> Redis -> answer) and then say
 * UNIMPLEMENTED, so the plumbing is exercised from day one. */
#ifndef COMMSGATE_RPC_MESSAGING_H
#define COMMSGATE_RPC_MESSAGING_H

#include <stddef.h>

struct rpc_method;

#define MESSAGING_MAX_METHODS 16

/* Fills out[] (room for MESSAGING_MAX_METHODS) and returns the count. The
 * paths come from the protobuf-c service descriptor, so they cannot drift
 * from the .proto. */
size_t messaging_methods(struct rpc_method *out);

#endif
