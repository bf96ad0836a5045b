/* Who is calling: the callers file (auth/callers.h) applied to each call
 * before its handler runs (rpc_server_opts.authorize). An identity the file
 * does not name is UNAUTHENTICATED (CALLER_UNKNOWN); an RPC the caller may
 * not use is PERMISSION_DENIED (RPC_NOT_ALLOWED); otherwise the caller goes
 * on the call (rpc_call_caller), for idempotency scope, quotas and metrics.
 * Without a callers file every call passes, as before. */
#ifndef COMMSGATE_RPC_CALLER_AUTH_H
#define COMMSGATE_RPC_CALLER_AUTH_H

struct callers;
struct caller_auth;
struct evbuffer;
struct rpc_call;

/* callers may be NULL (no file); it must outlive the context. */
int caller_auth_new(const struct callers *callers, struct caller_auth **out);
void caller_auth_free(struct caller_auth **a);
/* rpc_server_opts.authorize; arg: the caller_auth. Queue thread. */
int caller_auth(struct rpc_call *call, void *arg);
/* commsgate_caller_calls_total{caller,result} and
 * commsgate_caller_unknown_total. Any thread. */
void caller_auth_metrics(struct caller_auth *a, struct evbuffer *out);

#endif
