/* SendSMS. */
#ifndef COMMSGATE_RPC_SMS_H
#define COMMSGATE_RPC_SMS_H

#include "rpc/server.h"

/* Sets the handlers of the SendSMS entry of the method table. */
void rpc_sms_method(struct rpc_method *m);

#endif
