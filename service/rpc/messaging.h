/* commsgate.v1.MessagingService: the method table. Each RPC family lives in its
 * own rpc_<family>.c (rpc_sms, rpc_whatsapp, rpc_voice, rpc_verify,
 * rpc_message); a method no family has taken answers UNIMPLEMENTED. */
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
