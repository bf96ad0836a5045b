/* SendWhatsApp. */
#ifndef COMMSGATE_RPC_WHATSAPP_H
#define COMMSGATE_RPC_WHATSAPP_H

#include "rpc/server.h"

void rpc_whatsapp_method(struct rpc_method *m);

#endif
