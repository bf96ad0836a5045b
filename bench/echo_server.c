/* bench-echo: the baseline. A bare gRPC C-core unary echo server with the
 * same library and the same number of queue threads as commsgate, no Redis,
 * no HTTP. With --delay-ms, answers come from a second thread after the
 * delay (all delays are equal, so a FIFO is a timer queue).
 *
 *   bench-echo --listen H:P [--threads N] [--delay-ms D] */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum kind { ARRIVED, FINISHED };

struct call {
    enum kind kind;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    int cancelled;
    double due;
    struct call *next;
};

static grpc_server *server;
static grpc_completion_queue *cq;
static void *method;
static int delay_ms;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct call *head, *tail;
static volatile int stopping;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void arm(void)
{
    struct call *c = calloc(1, sizeof(*c));
    c->kind = ARRIVED;
    grpc_metadata_array_init(&c->md);
    grpc_server_request_registered_call(server, method, &c->call, &c->deadline, &c->md,
                                        &c->payload, cq, cq, c);
}

static void answer(struct call *c)
{
    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    c->kind = FINISHED;
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->payload;
    ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
    ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[3].data.recv_close_on_server.cancelled = &c->cancelled;
    grpc_call_start_batch(c->call, ops, 4, c, NULL);
}

static void release(struct call *c)
{
    if (c->call)
        grpc_call_unref(c->call);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    grpc_metadata_array_destroy(&c->md);
    free(c);
}

static void *poller(void *arg)
{
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return NULL;
        struct call *c = ev.tag;
        if (!c)
            continue; /* the shutdown tag */
        if (c->kind == FINISHED || !ev.success || !c->payload) {
            int rearm = c->kind == ARRIVED && ev.success && !stopping;
            release(c);
            if (rearm)
                arm();
            continue;
        }
        if (!stopping)
            arm();
        if (delay_ms <= 0) {
            answer(c);
            continue;
        }
        c->due = now_ms() + delay_ms;
        pthread_mutex_lock(&lock);
        if (tail)
            tail->next = c;
        else
            head = c;
        tail = c;
        pthread_cond_signal(&cond);
        pthread_mutex_unlock(&lock);
    }
}

static void *delayer(void *arg)
{
    pthread_mutex_lock(&lock);
    while (!stopping) {
        if (!head) {
            pthread_cond_wait(&cond, &lock);
            continue;
        }
        double wait = head->due - now_ms();
        if (wait > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            long ns = ts.tv_nsec + (long)(wait * 1e6);
            ts.tv_sec += ns / 1000000000L;
            ts.tv_nsec = ns % 1000000000L;
            pthread_cond_timedwait(&cond, &lock, &ts);
            continue;
        }
        struct call *c = head;
        head = c->next;
        if (!head)
            tail = NULL;
        pthread_mutex_unlock(&lock);
        answer(c);
        pthread_mutex_lock(&lock);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *listen = NULL;
    int threads = 2;
    sigset_t sigs;
    int sig;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--listen")) listen = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--delay-ms")) delay_ms = atoi(argv[i + 1]);
    }
    if (!listen || threads < 1) {
        fprintf(stderr, "usage: bench-echo --listen H:P [--threads N] [--delay-ms D]\n");
        return 2;
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    grpc_init();
    server = grpc_server_create(NULL, NULL);
    cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(server, cq, NULL);
    method = grpc_server_register_method(server, "/bench.Echo/Echo", NULL,
                                         GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    if (!grpc_server_add_http2_port(server, listen, creds)) {
        fprintf(stderr, "bench-echo: cannot listen on %s\n", listen);
        return 1;
    }
    grpc_server_credentials_release(creds);
    grpc_server_start(server);
    for (int i = 0; i < 64; i++)
        arm();
    pthread_t *t = calloc((size_t)threads + 1, sizeof(*t));
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, poller, NULL);
    pthread_create(&t[threads], NULL, delayer, NULL);
    fprintf(stderr, "bench-echo listening on %s\n", listen);
    sigwait(&sigs, &sig);
    stopping = 1;
    pthread_mutex_lock(&lock);
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    pthread_join(t[threads], NULL);
    grpc_server_shutdown_and_notify(server, cq, NULL);
    grpc_server_cancel_all_calls(server);
    while (head) { /* answered never: release them */
        struct call *c = head;
        head = c->next;
        answer(c);
    }
    grpc_completion_queue_shutdown(cq);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    grpc_server_destroy(server);
    grpc_completion_queue_destroy(cq);
    free(t);
    grpc_shutdown();
    return 0;
}
