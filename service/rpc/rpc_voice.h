/* PlaceCall (voice). */
#ifndef COMMSGATE_RPC_VOICE_H
#define COMMSGATE_RPC_VOICE_H

#include "rpc/server.h"

void rpc_voice_method(struct rpc_method *m);

#endif
