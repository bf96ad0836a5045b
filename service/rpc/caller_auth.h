/* Who is calling: the callers file (auth/callers.h) applied to each call
 * before its handler runs (rpc_server_opts.authorize). An identity the file
 * does not name is UNAUTHENTICATED (CALLER_UNKNOWN); an RPC the caller may
 * not use is PERMISSION_DENIED (RPC_NOT_ALLOWED); otherwise the caller's
 * name goes on the call (rpc_call_caller), for idempotency scope and logs.
 * Without a callers file every call passes, as before. Queue thread. */
#ifndef COMMSGATE_RPC_CALLER_AUTH_H
#define COMMSGATE_RPC_CALLER_AUTH_H

struct rpc_call;

/* arg: the struct app. */
int caller_auth(struct rpc_call *call, void *arg);

#endif
