/* GetMessage. */
#ifndef COMMSGATE_RPC_MESSAGE_H
#define COMMSGATE_RPC_MESSAGE_H

#include "rpc/server.h"

void rpc_message_method(struct rpc_method *m);

#endif
