/* gRPC core's own log lines (gpr_log: a port already in use, a failed
 * handshake) written in commsgate's JSON log instead of gRPC's text format
 * on stderr, so every line an operator's collector reads parses. */
#ifndef COMMSGATE_RPC_GRPC_LOG_H
#define COMMSGATE_RPC_GRPC_LOG_H

/* Before grpc_init. gRPC's own threshold stays (GRPC_VERBOSITY, default
 * ERROR); commsgate's level then filters as for any line. */
void grpc_log_route(void);

#endif
