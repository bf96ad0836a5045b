/* StartVerification and CheckVerification. */
#ifndef COMMSGATE_RPC_VERIFY_H
#define COMMSGATE_RPC_VERIFY_H

#include "rpc/server.h"

void rpc_verify_methods(struct rpc_method *start, struct rpc_method *check);

#endif
