/* gRPC C core server. Each call is one struct with a state and a tag per
 * batch kind; a reference count (one per batch in flight plus one for the
 * handler) decides who frees it, because completions arrive on any queue
 * thread while the loop thread may still hold the call. */
#include "rpc/server.h"

#include <event2/buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "google/rpc/status.pb-c.h"
#include "loop/loop.h"
#include "rpc/grpc_tls.h"

/* The completion queue orders what one thread did to a call before handing
 * gRPC a tag and what another does once the tag comes back, but Debian's
 * gRPC is not built with ThreadSanitizer, which cannot see that edge. The
 * TSan build (make tsan) is told of it here; elsewhere these are no-ops. */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define TAG_HANDED(tag) __tsan_release(tag)
#define TAG_BACK(tag) __tsan_acquire(tag)
#else
#define TAG_HANDED(tag) ((void)(tag))
#define TAG_BACK(tag) ((void)(tag))
#endif

/* Calls armed per registered method: the core hands a new call to an armed
 * request without waiting for a queue thread to re-arm one. Each arrival
 * re-arms at once, so 8 keep up at saturation as well as 32 did (same
 * throughput, within this machine's noise), and hold 100 KB less. */
#define ARMED_PER_METHOD 8
#define ARMED_GENERIC 4
/* gRPC status codes 0 (OK) to 16 (UNAUTHENTICATED). */
#define RPC_STATUS_CODES 17

enum tag_kind {
    TAG_REQUEST,
    TAG_CLOSE,
    TAG_SEND,
    TAG_RECV,
    TAG_FINISH,
    TAG_GENERIC_REQUEST,
    TAG_GENERIC_DONE,
    TAG_SHUTDOWN,
};

struct rpc_tag {
    enum tag_kind kind;
};

enum call_state {
    CALL_ARMED,     /* waiting in the core for a client */
    CALL_HANDLING,  /* with its handler, on some thread */
    CALL_FINISHING, /* final batch started */
};

struct rpc_call {
    struct rpc_tag tag_request, tag_close, tag_send, tag_recv, tag_finish;
    struct loop_task task;
    struct rpc_server *server;
    const struct rpc_method *method;
    void *method_handle;
    _Atomic enum call_state state;
    atomic_int refs;
    atomic_int cancelled;
    int recv_cancelled; /* written by the core when the close batch completes */
    int initial_md_sent;

    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array request_md;
    grpc_byte_buffer *payload;
    grpc_byte_buffer *send_bb, *finish_bb;
    grpc_byte_buffer *recv_bb; /* written by the core when a recv batch completes */
    grpc_metadata trailers[2]; /* kept until the call is freed */
    size_t ntrailers;
    char caller[40]; /* who authorize said it is; "" without a callers file */
    const void *caller_info;
    void *data;
};

/* A call to a method we do not serve: answered UNIMPLEMENTED at once, since
 * otherwise it would hang until the client's deadline. */
struct generic_call {
    struct rpc_tag tag_request, tag_done;
    struct rpc_server *server;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array request_md;
    int cancelled;
};

struct rpc_server {
    struct rpc_server_opts opts;
    const struct rpc_method *methods;
    size_t nmethods;
    void **handles;
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t *threads;
    int nthreads;
    atomic_ulong *counts; /* [method][status code] answered */
    int port;
    atomic_int shutting_down;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    int live;          /* guarded by lock */
    int shutdown_done; /* guarded by lock */
    struct rpc_tag tag_shutdown;
};

#define CONTAINER(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static const char *const state_names[] = {"armed", "handling", "finishing"};

/* Every state change goes through here so a debug log shows each step. */
static void set_state(struct rpc_call *c, enum call_state to)
{
    enum call_state from = atomic_exchange(&c->state, to);
    if (log_enabled(LOG_LEVEL_DEBUG))
        log_event(LOG_LEVEL_DEBUG, "rpc_call_state",
                  json_pack("{s:s, s:s, s:s}", "method", c->method->path, "from",
                            state_names[from], "to", state_names[to]));
}

static void call_free(struct rpc_call *c)
{
    struct rpc_server *s = c->server;
    int counted = c->call != NULL;

    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->request_md);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->recv_bb)
        grpc_byte_buffer_destroy(c->recv_bb);
    if (c->send_bb)
        grpc_byte_buffer_destroy(c->send_bb);
    if (c->finish_bb)
        grpc_byte_buffer_destroy(c->finish_bb);
    for (size_t i = 0; i < c->ntrailers; i++) {
        grpc_slice_unref(c->trailers[i].key);
        grpc_slice_unref(c->trailers[i].value);
    }
    free(c);
    if (counted) {
        pthread_mutex_lock(&s->lock);
        if (--s->live == 0)
            pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
    }
}

static void call_unref(struct rpc_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        call_free(c);
}

static int arm(struct rpc_server *s, const struct rpc_method *m, void *handle)
{
    struct rpc_call *c = calloc(1, sizeof(*c));
    if (!c)
        return CG_ENOMEM;
    c->tag_request.kind = TAG_REQUEST;
    c->tag_close.kind = TAG_CLOSE;
    c->tag_send.kind = TAG_SEND;
    c->tag_recv.kind = TAG_RECV;
    c->tag_finish.kind = TAG_FINISH;
    c->server = s;
    c->method = m;
    c->method_handle = handle;
    atomic_init(&c->state, CALL_ARMED);
    grpc_metadata_array_init(&c->request_md);
    TAG_HANDED(&c->tag_request);
    grpc_call_error err = grpc_server_request_registered_call(
        s->server, handle, &c->call, &c->deadline, &c->request_md,
        m->client_streams ? NULL : &c->payload, /* the core asserts NULL for PAYLOAD_NONE */
        s->cq, s->cq, &c->tag_request);
    if (err != GRPC_CALL_OK) {
        grpc_metadata_array_destroy(&c->request_md);
        free(c);
        return CG_EGRPC;
    }
    return CG_OK;
}

static int arm_generic(struct rpc_server *s)
{
    struct generic_call *g = calloc(1, sizeof(*g));
    if (!g)
        return CG_ENOMEM;
    g->tag_request.kind = TAG_GENERIC_REQUEST;
    g->tag_done.kind = TAG_GENERIC_DONE;
    g->server = s;
    grpc_call_details_init(&g->details);
    grpc_metadata_array_init(&g->request_md);
    TAG_HANDED(&g->tag_request);
    if (grpc_server_request_call(s->server, &g->call, &g->details, &g->request_md, s->cq, s->cq,
                                 &g->tag_request) != GRPC_CALL_OK) {
        grpc_call_details_destroy(&g->details);
        grpc_metadata_array_destroy(&g->request_md);
        free(g);
        return CG_EGRPC;
    }
    return CG_OK;
}

static void generic_free(struct generic_call *g)
{
    if (g->call)
        grpc_call_unref(g->call);
    grpc_call_details_destroy(&g->details);
    grpc_metadata_array_destroy(&g->request_md);
    free(g);
}

static void generic_arrived(struct generic_call *g, int success)
{
    struct rpc_server *s = g->server;
    grpc_op ops[3];
    char msg[300];

    if (!success) {
        generic_free(g);
        return;
    }
    if (!atomic_load(&s->shutting_down))
        arm_generic(s);
    char *method = grpc_slice_to_c_string(g->details.method);
    snprintf(msg, sizeof(msg), "unknown method %s", method);
    gpr_free(method);
    grpc_slice details = grpc_slice_from_copied_string(msg);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[1].data.recv_close_on_server.cancelled = &g->cancelled;
    ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[2].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
    ops[2].data.send_status_from_server.status_details = &details;
    grpc_call *call = g->call; /* read before the tag is handed over */
    TAG_HANDED(&g->tag_done);
    if (grpc_call_start_batch(call, ops, 3, &g->tag_done, NULL) != GRPC_CALL_OK)
        generic_free(g);
    grpc_slice_unref(details);
}

/* A call arrived (or its request failed because the server shuts down). */
static void on_request(struct rpc_call *c, int success)
{
    struct rpc_server *s = c->server;
    grpc_op op;
    grpc_byte_buffer_reader reader;

    if (!success) {
        c->call = NULL; /* nothing was delivered */
        call_free(c);
        return;
    }
    if (!atomic_load(&s->shutting_down))
        arm(s, c->method, c->method_handle);

    pthread_mutex_lock(&s->lock);
    s->live++;
    pthread_mutex_unlock(&s->lock);

    /* No payload: the call was cancelled or expired before delivery (a
     * client-streaming call has none: its messages are asked for). */
    if (!c->payload && !c->method->client_streams) {
        atomic_store(&c->refs, 1);
        call_unref(c);
        return;
    }
    atomic_store(&c->refs, 2); /* the close batch, and the handler */
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->recv_cancelled;
    grpc_call *call = c->call; /* read before the tag is handed over */
    TAG_HANDED(&c->tag_close);
    if (grpc_call_start_batch(call, &op, 1, &c->tag_close, NULL) != GRPC_CALL_OK) {
        atomic_store(&c->refs, 1);
        call_unref(c);
        return;
    }
    set_state(c, CALL_HANDLING);

    if (gpr_time_cmp(c->deadline, gpr_now(c->deadline.clock_type)) < 0) {
        rpc_call_finish(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline passed before the call started",
                        NULL);
        return;
    }
    if (c->method->client_streams) {
        if (!c->method->open && s->opts.authorize && s->opts.authorize(c, s->opts.authorize_arg))
            return; /* refused, and answered */
        c->method->on_call(c, NULL, 0);
        return;
    }
    if (!grpc_byte_buffer_reader_init(&reader, c->payload)) {
        rpc_call_finish(c, GRPC_STATUS_INTERNAL, "cannot read the request", NULL);
        return;
    }
    grpc_slice req = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    if (!c->method->open && s->opts.authorize && s->opts.authorize(c, s->opts.authorize_arg)) {
        grpc_slice_unref(req);
        return; /* refused, and answered */
    }
    c->method->on_call(c, GRPC_SLICE_START_PTR(req), GRPC_SLICE_LENGTH(req));
    grpc_slice_unref(req);
}

/* A message rpc_call_recv asked for arrived, or the stream ended. */
static void on_recv(struct rpc_call *c, int success)
{
    grpc_byte_buffer_reader reader;
    grpc_byte_buffer *bb = c->recv_bb;

    c->recv_bb = NULL;
    if (!success || !bb) {
        c->method->on_message(c, NULL, 0, success);
    } else if (!grpc_byte_buffer_reader_init(&reader, bb)) {
        c->method->on_message(c, NULL, 0, 0);
    } else {
        grpc_slice msg = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
        c->method->on_message(c, GRPC_SLICE_START_PTR(msg), GRPC_SLICE_LENGTH(msg), 1);
        grpc_slice_unref(msg);
    }
    if (bb)
        grpc_byte_buffer_destroy(bb);
    call_unref(c);
}

static void dispatch(struct rpc_server *s, grpc_event ev)
{
    struct rpc_tag *tag = ev.tag;
    struct rpc_call *c;

    switch (tag->kind) {
    case TAG_REQUEST:
        on_request(CONTAINER(tag, struct rpc_call, tag_request), ev.success);
        break;
    case TAG_CLOSE:
        c = CONTAINER(tag, struct rpc_call, tag_close);
        if (c->recv_cancelled || !ev.success)
            atomic_store(&c->cancelled, 1);
        if (c->method->on_closed)
            c->method->on_closed(c, atomic_load(&c->cancelled));
        call_unref(c);
        break;
    case TAG_SEND:
        c = CONTAINER(tag, struct rpc_call, tag_send);
        if (c->method->on_sent)
            c->method->on_sent(c, ev.success);
        call_unref(c);
        break;
    case TAG_RECV:
        on_recv(CONTAINER(tag, struct rpc_call, tag_recv), ev.success);
        break;
    case TAG_FINISH:
        call_unref(CONTAINER(tag, struct rpc_call, tag_finish));
        break;
    case TAG_GENERIC_REQUEST:
        generic_arrived(CONTAINER(tag, struct generic_call, tag_request), ev.success);
        break;
    case TAG_GENERIC_DONE:
        generic_free(CONTAINER(tag, struct generic_call, tag_done));
        break;
    case TAG_SHUTDOWN:
        pthread_mutex_lock(&s->lock);
        s->shutdown_done = 1;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        break;
    }
}

static void *cq_thread(void *arg)
{
    struct rpc_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            TAG_BACK(ev.tag);
            dispatch(s, ev);
        }
    }
    return NULL;
}

int rpc_server_new(const struct rpc_server_opts *opts, const struct rpc_method *methods,
                   size_t nmethods, struct rpc_server **out)
{
    struct rpc_server *s = calloc(1, sizeof(*s));
    grpc_arg args[2];
    int rc = CG_ENOMEM;

    if (!s)
        return CG_ENOMEM;
    s->opts = *opts;
    s->methods = methods;
    s->nmethods = nmethods;
    s->tag_shutdown.kind = TAG_SHUTDOWN;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->handles = calloc(nmethods, sizeof(*s->handles));
    s->counts = calloc(nmethods * RPC_STATUS_CODES, sizeof(*s->counts));
    s->threads = calloc((size_t)opts->threads, sizeof(*s->threads));
    if (!s->handles || !s->threads || !s->counts)
        goto fail;

    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)opts->max_message_bytes;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[1].value.integer = 0; /* a second daemon on the same port must fail, not share */
    grpc_channel_args chargs = {2, args};
    s->server = grpc_server_create(&chargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    if (!s->server || !s->cq)
        goto fail;
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    for (size_t i = 0; i < nmethods; i++) {
        s->handles[i] = grpc_server_register_method(
            s->server, methods[i].path, NULL,
            methods[i].client_streams ? GRPC_SRM_PAYLOAD_NONE
                                      : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
            0);
        if (!s->handles[i]) {
            rc = CG_EGRPC;
            goto fail;
        }
    }
    *out = s;
    return CG_OK;
fail:
    rpc_server_free(&s);
    return rc;
}

int rpc_server_start(struct rpc_server *s, char *errbuf, size_t errlen)
{
    grpc_server_credentials *creds = grpc_tls_credentials(s->opts.tls);
    if (!creds) {
        snprintf(errbuf, errlen, "cannot make the gRPC port's TLS credentials");
        return CG_ESYS;
    }
    s->port = grpc_server_add_http2_port(s->server, s->opts.addr, creds);
    grpc_server_credentials_release(creds);
    if (s->port == 0) {
        snprintf(errbuf, errlen, "cannot listen on COMMSGATE_GRPC_ADDR=%s (in use or not local)",
                 s->opts.addr);
        return CG_ESYS;
    }
    grpc_server_start(s->server);
    for (size_t i = 0; i < s->nmethods; i++)
        for (int k = 0; k < ARMED_PER_METHOD; k++)
            if (arm(s, &s->methods[i], s->handles[i]))
                goto fail;
    for (int k = 0; k < ARMED_GENERIC; k++)
        if (arm_generic(s))
            goto fail;
    for (int i = 0; i < s->opts.threads; i++) {
        char name[16];
        if (pthread_create(&s->threads[i], NULL, cq_thread, s))
            goto fail;
        s->nthreads++;
        snprintf(name, sizeof(name), "cg-cq-%d", i % 100);
        pthread_setname_np(s->threads[i], name);
    }
    return CG_OK;
fail:
    snprintf(errbuf, errlen, "cannot start the gRPC server threads");
    return CG_ESYS;
}

int rpc_server_port(const struct rpc_server *s)
{
    return s->port;
}

int rpc_server_live_calls(struct rpc_server *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->live;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* Waits until the shutdown tag came and no call is held, or until `ms`. */
static int wait_idle(struct rpc_server *s, int ms)
{
    gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(ms, GPR_TIMESPAN));
    struct timespec ts = {until.tv_sec, until.tv_nsec};
    int idle;

    pthread_mutex_lock(&s->lock);
    while (!(idle = s->shutdown_done && s->live == 0))
        if (pthread_cond_timedwait(&s->cond, &s->lock, &ts))
            break;
    idle = s->shutdown_done && s->live == 0;
    pthread_mutex_unlock(&s->lock);
    return idle;
}

int rpc_server_shutdown(struct rpc_server *s, int grace_ms, void (*last_word)(void *arg),
                        void *arg)
{
    int cancelled = 0;

    atomic_store(&s->shutting_down, 1);
    TAG_HANDED(&s->tag_shutdown);
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->tag_shutdown);
    int idle = wait_idle(s, grace_ms);
    if (!idle && last_word) {
        last_word(arg);
        idle = wait_idle(s, 1000);
    }
    if (!idle) {
        cancelled = rpc_server_live_calls(s);
        log_event(LOG_LEVEL_WARN, "grpc_cancel_calls",
                  json_pack("{s:i, s:i}", "calls", cancelled, "grace_ms", grace_ms));
        grpc_server_cancel_all_calls(s->server);
        /* Cancelled calls still get answered (the batches fail at once);
         * whatever the loop holds is failed when it stops. */
        wait_idle(s, 2000);
    }
    return cancelled;
}

void rpc_server_free(struct rpc_server **sp)
{
    struct rpc_server *s = *sp;
    if (!s)
        return;
    if (s->cq) {
        grpc_completion_queue_shutdown(s->cq);
        if (s->nthreads == 0) {
            /* Never started: drain here. */
            while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN)
                ;
        }
    }
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    if (s->server)
        grpc_server_destroy(s->server);
    if (s->cq)
        grpc_completion_queue_destroy(s->cq);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->handles);
    free(s->threads);
    free(s->counts);
    free(s);
    *sp = NULL;
}

const char *rpc_call_caller(const struct rpc_call *call)
{
    return call->caller;
}

void rpc_call_set_caller(struct rpc_call *call, const char *name, const void *info)
{
    snprintf(call->caller, sizeof(call->caller), "%s", name ? name : "");
    call->caller_info = info;
}

const void *rpc_call_caller_info(const struct rpc_call *call)
{
    return call->caller_info;
}

size_t rpc_call_peer_property(const struct rpc_call *call, const char *name, char **out,
                              size_t max, char *buf, size_t buflen)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call->call);
    size_t n = 0, used = 0;
    if (!ctx)
        return 0;
    grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, name);
    const grpc_auth_property *p;
    while (n < max && (p = grpc_auth_property_iterator_next(&it))) {
        if (p->value_length + 1 > buflen - used)
            break;
        if (memchr(p->value, 0, p->value_length))
            continue; /* not a name anyone could have written in the callers file */
        memcpy(buf + used, p->value, p->value_length);
        buf[used + p->value_length] = '\0';
        out[n++] = buf + used;
        used += p->value_length + 1;
    }
    grpc_auth_context_release(ctx);
    return n;
}

void *rpc_call_app(const struct rpc_call *c)
{
    return c->server->opts.app;
}

const struct rpc_method *rpc_call_method(const struct rpc_call *c)
{
    return c->method;
}

gpr_timespec rpc_call_deadline(const struct rpc_call *c)
{
    return c->deadline;
}

int64_t rpc_call_ms_left(const struct rpc_call *c)
{
    if (gpr_time_cmp(c->deadline, gpr_inf_future(c->deadline.clock_type)) == 0)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(c->deadline, gpr_now(c->deadline.clock_type));
    int64_t ms = gpr_time_to_millis(left);
    return ms < 0 ? 0 : ms;
}

int rpc_call_is_cancelled(const struct rpc_call *c)
{
    return atomic_load(&c->cancelled);
}

void *rpc_call_get_data(const struct rpc_call *c)
{
    return c->data;
}

void rpc_call_set_data(struct rpc_call *c, void *data)
{
    c->data = data;
}

struct loop_task *rpc_call_task(struct rpc_call *c)
{
    return &c->task;
}

struct rpc_call *rpc_call_from_task(struct loop_task *task)
{
    return CONTAINER(task, struct rpc_call, task);
}

static grpc_byte_buffer *pack(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

int rpc_call_metadata(const struct rpc_call *c, const char *key, char *buf, size_t buflen)
{
    LOOP_ASSERT_NOT_LOOP(); /* the metadata array is the queue thread's */
    size_t klen = strlen(key);
    for (size_t i = 0; i < c->request_md.count; i++) {
        const grpc_metadata *m = &c->request_md.metadata[i];
        if (GRPC_SLICE_LENGTH(m->key) != klen ||
            memcmp(GRPC_SLICE_START_PTR(m->key), key, klen) != 0)
            continue;
        size_t vlen = GRPC_SLICE_LENGTH(m->value);
        if (vlen >= buflen)
            return -1;
        memcpy(buf, GRPC_SLICE_START_PTR(m->value), vlen);
        buf[vlen] = '\0';
        return (int)vlen;
    }
    return -1;
}

static int finish(struct rpc_call *c, grpc_status_code code, const char *msg,
                  grpc_byte_buffer *bb);

static grpc_byte_buffer *copied(const uint8_t *bytes, size_t len)
{
    grpc_slice slice = grpc_slice_from_copied_buffer((const char *)bytes, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

int rpc_call_finish_packed(struct rpc_call *c, const uint8_t *resp, size_t len)
{
    return finish(c, GRPC_STATUS_OK, NULL, copied(resp, len));
}

int rpc_call_finish(struct rpc_call *c, grpc_status_code code, const char *msg,
                    const ProtobufCMessage *resp)
{
    return finish(c, code, msg, code == GRPC_STATUS_OK && resp ? pack(resp) : NULL);
}

/* bb: the response, sent only with OK; owned by the call from here on. */
static int finish(struct rpc_call *c, grpc_status_code code, const char *msg,
                  grpc_byte_buffer *bb)
{
    grpc_op ops[3];
    size_t n = 0;
    grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");

    set_state(c, CALL_FINISHING);
    if (code >= 0 && code < RPC_STATUS_CODES)
        atomic_fetch_add(&c->server->counts[(size_t)(c->method - c->server->methods) *
                                                RPC_STATUS_CODES + code],
                         1);
    memset(ops, 0, sizeof(ops));
    if (!c->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_md_sent = 1;
    }
    c->finish_bb = bb;
    if (bb && code == GRPC_STATUS_OK) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = bb;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.status_details = msg ? &details : NULL;
    ops[n].data.send_status_from_server.trailing_metadata = c->trailers;
    ops[n++].data.send_status_from_server.trailing_metadata_count = c->ntrailers;

    /* The handler's reference passes to the batch. After start_batch the
     * call may already be freed by another queue thread. */
    grpc_call *call = c->call; /* read before the tag is handed over */
    TAG_HANDED(&c->tag_finish);
    grpc_call_error err = grpc_call_start_batch(call, ops, n, &c->tag_finish, NULL);
    grpc_slice_unref(details);
    if (err != GRPC_CALL_OK) {
        log_event(LOG_LEVEL_ERROR, "grpc_batch_failed", json_pack("{s:i}", "error", err));
        call_unref(c);
        return CG_EGRPC;
    }
    return CG_OK;
}

/* Packs one detail message into an Any; returns its packed size or 0. */
static size_t pack_any(const ProtobufCMessage *m, const char *type_url, uint8_t *buf,
                       size_t cap, Google__Rpc__Any *any)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    if (len > cap)
        return 0;
    protobuf_c_message_pack(m, buf);
    any->type_url = (char *)type_url;
    any->value.data = buf;
    any->value.len = len;
    return len ? len : 1;
}

static void add_trailer(struct rpc_call *c, const char *key, grpc_slice value)
{
    c->trailers[c->ntrailers].key = grpc_slice_from_static_string(key);
    c->trailers[c->ntrailers].value = value;
    c->ntrailers++;
}

int rpc_call_fail(struct rpc_call *c, const struct rpc_error *e)
{
    Google__Rpc__Status status = GOOGLE__RPC__STATUS__INIT;
    Google__Rpc__ErrorInfo info = GOOGLE__RPC__ERROR_INFO__INIT;
    Google__Rpc__RetryInfo retry = GOOGLE__RPC__RETRY_INFO__INIT;
    Google__Rpc__Duration delay = GOOGLE__RPC__DURATION__INIT;
    Google__Rpc__Any any_info = GOOGLE__RPC__ANY__INIT, any_retry = GOOGLE__RPC__ANY__INIT;
    Google__Rpc__Any *details[2];
    Google__Rpc__ErrorInfo__MetadataEntry md[2] = {GOOGLE__RPC__ERROR_INFO__METADATA_ENTRY__INIT,
                                                   GOOGLE__RPC__ERROR_INFO__METADATA_ENTRY__INIT};
    Google__Rpc__ErrorInfo__MetadataEntry *mdp[2];
    char twilio_code[16], retry_s[24];
    uint8_t info_buf[512], retry_buf[64];

    if (e->twilio_code) {
        snprintf(twilio_code, sizeof(twilio_code), "%d", e->twilio_code);
        add_trailer(c, "twilio-error-code", grpc_slice_from_copied_string(twilio_code));
    }
    if (reason_name(e->reason)) {
        info.reason = (char *)reason_name(e->reason);
        info.domain = "commsgate";
        info.metadata = mdp;
        if (e->twilio_code) {
            md[info.n_metadata].key = "twilio_error_code";
            md[info.n_metadata].value = twilio_code;
            mdp[info.n_metadata] = &md[info.n_metadata];
            info.n_metadata++;
        }
        if (e->retry_after_ms >= 0) {
            snprintf(retry_s, sizeof(retry_s), "%lld", (long long)((e->retry_after_ms + 999) / 1000));
            md[info.n_metadata].key = "retry_after_seconds";
            md[info.n_metadata].value = retry_s;
            mdp[info.n_metadata] = &md[info.n_metadata];
            info.n_metadata++;
        }
        status.code = (int32_t)e->code;
        status.message = (char *)(e->msg ? e->msg : "");
        status.details = details;
        if (pack_any(&info.base, "type.googleapis.com/google.rpc.ErrorInfo", info_buf,
                     sizeof(info_buf), &any_info))
            details[status.n_details++] = &any_info;
        if (e->retry_after_ms >= 0) {
            delay.seconds = e->retry_after_ms / 1000;
            delay.nanos = (int32_t)(e->retry_after_ms % 1000) * 1000000;
            retry.retry_delay = &delay;
            if (pack_any(&retry.base, "type.googleapis.com/google.rpc.RetryInfo", retry_buf,
                         sizeof(retry_buf), &any_retry))
                details[status.n_details++] = &any_retry;
        }
        size_t len = protobuf_c_message_get_packed_size(&status.base);
        grpc_slice bin = grpc_slice_malloc(len);
        protobuf_c_message_pack(&status.base, GRPC_SLICE_START_PTR(bin));
        add_trailer(c, "grpc-status-details-bin", bin);
    }
    return rpc_call_finish(c, e->code, e->msg, NULL);
}

/* bb: the message; owned by the call from here on. */
static int send_bb(struct rpc_call *c, grpc_byte_buffer *bb)
{
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    if (!c->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_md_sent = 1;
    }
    if (c->send_bb)
        grpc_byte_buffer_destroy(c->send_bb); /* its batch has completed */
    c->send_bb = bb;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->send_bb;
    atomic_fetch_add(&c->refs, 1);
    grpc_call *call = c->call; /* read before the tag is handed over */
    TAG_HANDED(&c->tag_send);
    if (grpc_call_start_batch(call, ops, n, &c->tag_send, NULL) != GRPC_CALL_OK) {
        call_unref(c);
        return CG_EGRPC;
    }
    return CG_OK;
}

int rpc_call_send(struct rpc_call *c, const ProtobufCMessage *msg)
{
    return send_bb(c, pack(msg));
}

int rpc_call_send_packed(struct rpc_call *c, const uint8_t *msg, size_t len)
{
    return send_bb(c, copied(msg, len));
}

int rpc_call_recv(struct rpc_call *c)
{
    grpc_op op;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    atomic_fetch_add(&c->refs, 1);
    grpc_call *call = c->call; /* read before the tag is handed over */
    TAG_HANDED(&c->tag_recv);
    if (grpc_call_start_batch(call, &op, 1, &c->tag_recv, NULL) != GRPC_CALL_OK) {
        call_unref(c);
        return CG_EGRPC;
    }
    return CG_OK;
}

void rpc_call_release(struct rpc_call *c)
{
    call_unref(c);
}

static const char *const code_names[RPC_STATUS_CODES] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED"};

void rpc_server_metrics(struct rpc_server *s, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP commsgate_rpc_requests_total RPCs answered, by method and "
                             "gRPC status.\n# TYPE commsgate_rpc_requests_total counter\n");
    for (size_t m = 0; m < s->nmethods; m++) {
        const char *name = strrchr(s->methods[m].path, '/') + 1;
        for (int c = 0; c < RPC_STATUS_CODES; c++) {
            unsigned long n = atomic_load(&s->counts[m * RPC_STATUS_CODES + c]);
            if (n)
                evbuffer_add_printf(out,
                                    "commsgate_rpc_requests_total{method=\"%s\",code=\"%s\"} %lu\n",
                                    name, code_names[c], n);
        }
    }
    evbuffer_add_printf(out, "# HELP commsgate_rpc_in_flight Calls held right now.\n"
                             "# TYPE commsgate_rpc_in_flight gauge\ncommsgate_rpc_in_flight %d\n",
                        rpc_server_live_calls(s));
}
