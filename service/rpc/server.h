/* The gRPC server: completion-queue threads, the method table, and the
 * per-call object every RPC goes through. A call arrives on a queue thread,
 * its handler usually hands it to the loop thread, and whichever thread
 * holds it answers with rpc_call_finish. */
#ifndef COMMSGATE_RPC_SERVER_H
#define COMMSGATE_RPC_SERVER_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "core/reason.h"

struct rpc_server;
struct rpc_call;

struct rpc_method {
    const char *path; /* "/package.Service/Method" */
    /* Queue thread, once per call, with the request bytes (valid only during
     * the call: unpack and free them here). The handler then owns the call
     * and must end it with rpc_call_finish (or rpc_call_release, if the
     * client is already gone). */
    void (*on_call)(struct rpc_call *call, const uint8_t *req, size_t len);
    /* Optional, streaming methods: a message from rpc_call_send was sent
     * (ok) or not. Queue thread. */
    void (*on_sent)(struct rpc_call *call, int ok);
    /* Optional: the call is over on the client's side (cancelled: the client
     * cancelled, its deadline passed, or the server shuts down). Queue
     * thread; may run while the handler still holds the call. */
    void (*on_closed)(struct rpc_call *call, int cancelled);
    /* Client-streaming methods (client_streams set): the message asked for
     * with rpc_call_recv, valid only during the call; NULL once the client
     * has said it sends no more (ok) or the call failed (!ok). Queue thread. */
    void (*on_message)(struct rpc_call *call, const uint8_t *msg, size_t len, int ok);
    /* The method's own static data, e.g. its protobuf-c descriptor. */
    const void *data;
    /* Served to anyone who reaches the port, callers file or not (health). */
    int open;
    /* The client sends a stream: on_call gets no request (NULL, 0) and the
     * handler reads each message with rpc_call_recv. */
    int client_streams;
};

struct grpc_tls;
struct rpc_server_opts {
    const char *addr;
    int threads;
    long max_message_bytes;
    struct grpc_tls *tls; /* rpc/grpc_tls.h; NULL: plaintext. Outlives the server */
    /* Optional, queue thread, before each call that is not `open` reaches its
     * handler: 0 lets it through; otherwise it answered the call (refused). */
    int (*authorize)(struct rpc_call *call, void *arg);
    void *authorize_arg;
    void *app; /* handed to handlers through rpc_call_app */
};

/* `methods` must outlive the server. */
int rpc_server_new(const struct rpc_server_opts *opts, const struct rpc_method *methods,
                   size_t nmethods, struct rpc_server **out);
/* Binds and starts the queue threads. On failure writes why into errbuf. */
int rpc_server_start(struct rpc_server *s, char *errbuf, size_t errlen);
int rpc_server_port(const struct rpc_server *s);
/* Number of calls currently held (arrived and not yet freed). */
int rpc_server_live_calls(struct rpc_server *s);

struct evbuffer;
/* Appends commsgate_rpc_requests_total{method,code} in Prometheus text
 * format. Any thread. */
void rpc_server_metrics(struct rpc_server *s, struct evbuffer *out);

/* Main thread. Stops accepting calls and waits up to grace_ms for the calls
 * in flight to finish. Then, if `last_word` is set, calls it (main thread)
 * so the calls still held can be answered truthfully, and waits up to 1 s
 * more; then cancels the rest (they get gRPC's CANCELLED) and waits for
 * them to be answered. Returns the number of calls it had to cancel. The
 * loop thread must still run, since it answers calls. */
int rpc_server_shutdown(struct rpc_server *s, int grace_ms, void (*last_word)(void *arg),
                        void *arg);
/* After rpc_server_shutdown and after the loop thread has stopped: drains
 * the queue, joins the threads, destroys the server. Clears *s. */
void rpc_server_free(struct rpc_server **s);

/* Per-call accessors; any thread that holds the call. */
void *rpc_call_app(const struct rpc_call *call);
const struct rpc_method *rpc_call_method(const struct rpc_call *call);
gpr_timespec rpc_call_deadline(const struct rpc_call *call);
/* Milliseconds left before the caller's deadline (INT64_MAX if none). */
int64_t rpc_call_ms_left(const struct rpc_call *call);
/* True once the client has gone (cancel, deadline, shutdown). */
int rpc_call_is_cancelled(const struct rpc_call *call);
/* Copies the value of request metadata `key` (lowercase) into buf; returns
 * its length, or -1 if absent or longer than buflen - 1. Queue thread, in
 * on_call. */
int rpc_call_metadata(const struct rpc_call *call, const char *key, char *buf, size_t buflen);
/* The caller authorize identified (see rpc/caller_auth.h), "" if none. */
const char *rpc_call_caller(const struct rpc_call *call);
/* Its entry in the callers file (auth/callers.h), NULL if none. */
const void *rpc_call_caller_info(const struct rpc_call *call);
void rpc_call_set_caller(struct rpc_call *call, const char *name, const void *info);
/* Queue thread: the values of the TLS peer's property `name`
 * (GRPC_X509_SUBJECT_PROPERTY_NAME, _SAN_), up to max, copied into buf;
 * returns how many. None over plaintext. */
size_t rpc_call_peer_property(const struct rpc_call *call, const char *name, char **out,
                              size_t max, char *buf, size_t buflen);
/* Answers OK with a response packed elsewhere (an idempotent repeat). */
int rpc_call_finish_packed(struct rpc_call *call, const uint8_t *resp, size_t len);
/* A slot for the handler's own state. */
void *rpc_call_get_data(const struct rpc_call *call);
void rpc_call_set_data(struct rpc_call *call, void *data);
/* For handing the call to the loop thread (loop_post). */
struct loop_task *rpc_call_task(struct rpc_call *call);
struct rpc_call *rpc_call_from_task(struct loop_task *task);

/* Any thread that holds the call; ends the holder's ownership whatever it
 * returns: never touch the call afterwards. `resp` is packed here (sent only
 * with GRPC_STATUS_OK); `msg` is copied. */
int rpc_call_finish(struct rpc_call *call, grpc_status_code code, const char *msg,
                    const ProtobufCMessage *resp);
/* A refusal carrying what the caller's code can act on, beyond the status
 * code and message: */
struct rpc_error {
    grpc_status_code code;
    const char *msg;        /* grpc-message; copied */
    enum reason reason;     /* google.rpc.ErrorInfo reason (OPTED_OUT, ...);
                               REASON_NONE sends no status details */
    int twilio_code;        /* non-zero: also the `twilio-error-code` trailer and
                               ErrorInfo metadata twilio_error_code */
    int64_t retry_after_ms; /* >= 0: RetryInfo, and ErrorInfo metadata
                               retry_after_seconds (rounded up) */
};

/* rpc_call_finish for errors: adds the trailers above and a google.rpc.Status
 * in `grpc-status-details-bin`. Same ownership rule as rpc_call_finish. */
int rpc_call_fail(struct rpc_call *call, const struct rpc_error *e);

/* Streaming: sends one message; at most one in flight per call. The holder
 * keeps the call; on_sent reports completion. */
int rpc_call_send(struct rpc_call *call, const ProtobufCMessage *msg);
/* The same with a message packed elsewhere (copied). */
int rpc_call_send_packed(struct rpc_call *call, const uint8_t *msg, size_t len);
/* Client streaming: asks for the next message, delivered to on_message; at
 * most one asked for at a time. The holder keeps the call. */
int rpc_call_recv(struct rpc_call *call);
/* Gives the call up without answering (the client is gone). */
void rpc_call_release(struct rpc_call *call);

#endif
