/* TLS on the gRPC port, mutual TLS when a client CA is set: the server's
 * credentials, read from COMMSGATE_GRPC_TLS_CERT_FILE / _KEY_FILE /
 * _CLIENT_CA_FILE, and read again when those files change (Kubernetes
 * rotates a mounted secret by swapping a symlink), without a restart.
 *
 * gRPC asks for the certificates at each new handshake (its config fetcher,
 * on its own threads); the files are compared by inode, size and mtime, and
 * reloaded only when one changed. A reload that fails (a half-written file)
 * keeps the previous certificates and is logged once per change. */
#ifndef COMMSGATE_RPC_GRPC_TLS_H
#define COMMSGATE_RPC_GRPC_TLS_H

#include <grpc/grpc_security.h>
#include <stddef.h>

struct config;
struct grpc_tls;

enum grpc_tls_mode { GRPC_TLS_OFF, GRPC_TLS_ON, GRPC_TLS_MUTUAL };

/* Reads and checks the files now (a key that does not match its
 * certificate, an unreadable file: CG_ECONFIG, why in errbuf). With no
 * certificate configured, *out is NULL and the port is plaintext. */
int grpc_tls_new(const struct config *cfg, char *errbuf, size_t errlen, struct grpc_tls **out);
enum grpc_tls_mode grpc_tls_mode(const struct grpc_tls *t);
/* New credentials for grpc_server_add_http2_port (the caller releases
 * them); insecure ones when t is NULL. t must outlive the server. */
grpc_server_credentials *grpc_tls_credentials(struct grpc_tls *t);
/* How many times the certificates were loaded (1 at startup), for tests and
 * metrics. Any thread. */
unsigned long grpc_tls_loads(struct grpc_tls *t);
/* After the server is destroyed. Clears *t; NULL is a no-op. */
void grpc_tls_free(struct grpc_tls **t);

#endif
