/* bench-load: a gRPC C-core load generator. Keeps up to --concurrency unary
 * calls in flight (optionally paced to --rate per second, latency then
 * counted from each call's intended start), checks every answer (the batch
 * succeeded, grpc-status OK and a response message; else counted as an
 * error by its status, INTERNAL for the others), and prints one JSON line:
 * requests, ok, errors by status code, seconds, requests/s, latency
 * percentiles in ms.
 *
 *   bench-load --target H:P --method /pkg.Svc/Method --payloads FILE
 *              --requests N --concurrency C [--rate R] [--timeout-ms T]
 *
 * FILE holds payloads as <4-byte big-endian length><bytes>..., used round-robin. */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct slot {
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array initial, trailing;
    grpc_status_code status;
    grpc_slice details;
    double start;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static grpc_slice *payloads;
static size_t npayloads;

static int load_payloads(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char len[4];
    size_t cap = 16;
    if (!f)
        return -1;
    payloads = malloc(cap * sizeof(*payloads));
    while (fread(len, 1, 4, f) == 4) {
        size_t n = (size_t)len[0] << 24 | (size_t)len[1] << 16 | (size_t)len[2] << 8 | len[3];
        grpc_slice s = grpc_slice_malloc(n);
        if (fread(GRPC_SLICE_START_PTR(s), 1, n, f) != n)
            return -1;
        if (npayloads == cap)
            payloads = realloc(payloads, (cap *= 2) * sizeof(*payloads));
        payloads[npayloads++] = s;
    }
    fclose(f);
    return npayloads ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *target = NULL, *method = NULL, *file = NULL;
    long requests = 1000, concurrency = 100, timeout_ms = 30000;
    double rate = 0;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--target")) target = argv[i + 1];
        else if (!strcmp(argv[i], "--method")) method = argv[i + 1];
        else if (!strcmp(argv[i], "--payloads")) file = argv[i + 1];
        else if (!strcmp(argv[i], "--requests")) requests = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--concurrency")) concurrency = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--rate")) rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout-ms")) timeout_ms = atol(argv[i + 1]);
    }
    if (!target || !method || !file || requests <= 0 || concurrency <= 0) {
        fprintf(stderr, "usage: bench-load --target H:P --method PATH --payloads FILE "
                        "--requests N --concurrency C [--rate R] [--timeout-ms T]\n");
        return 2;
    }
    grpc_init();
    if (load_payloads(file)) {
        fprintf(stderr, "bench-load: cannot read payloads from %s\n", file);
        return 2;
    }
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_slice path = grpc_slice_from_copied_string(method);
    struct slot *slots = calloc((size_t)concurrency, sizeof(*slots));
    struct slot **free_slots = malloc((size_t)concurrency * sizeof(*free_slots));
    double *lat = malloc((size_t)requests * sizeof(*lat));
    long nfree = concurrency, started = 0, done = 0, ok = 0;
    long errors[17] = {0};

    for (long i = 0; i < concurrency; i++)
        free_slots[i] = &slots[i];
    double t0 = now_ms();
    while (done < requests) {
        /* Start what the concurrency and the pace allow. */
        while (started < requests && nfree > 0) {
            if (rate > 0 && now_ms() < t0 + started * 1000.0 / rate)
                break;
            struct slot *s = free_slots[--nfree];
            grpc_op ops[6];
            memset(ops, 0, sizeof(ops));
            memset(s, 0, sizeof(*s));
            grpc_slice p = grpc_slice_ref(payloads[started % (long)npayloads]);
            s->send = grpc_raw_byte_buffer_create(&p, 1);
            grpc_slice_unref(p);
            grpc_metadata_array_init(&s->initial);
            grpc_metadata_array_init(&s->trailing);
            /* At a fixed rate, latency counts from when the call was due,
             * not from when a free slot let it start: a stall then shows in
             * every call it delayed (no coordinated omission). */
            s->start = rate > 0 ? t0 + started * 1000.0 / rate : now_ms();
            gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                                 gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
            s->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, path, NULL,
                                               deadline, NULL);
            ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
            ops[1].op = GRPC_OP_SEND_MESSAGE;
            ops[1].data.send_message.send_message = s->send;
            ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
            ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
            ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->initial;
            ops[4].op = GRPC_OP_RECV_MESSAGE;
            ops[4].data.recv_message.recv_message = &s->recv;
            ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
            ops[5].data.recv_status_on_client.trailing_metadata = &s->trailing;
            ops[5].data.recv_status_on_client.status = &s->status;
            ops[5].data.recv_status_on_client.status_details = &s->details;
            if (grpc_call_start_batch(s->call, ops, 6, s, NULL) != GRPC_CALL_OK) {
                fprintf(stderr, "bench-load: start_batch failed\n");
                return 1;
            }
            started++;
        }
        gpr_timespec wait = rate > 0 && started < requests && nfree > 0
                                ? gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                               gpr_time_from_micros(200, GPR_TIMESPAN))
                                : gpr_inf_future(GPR_CLOCK_REALTIME);
        grpc_event ev = grpc_completion_queue_next(cq, wait, NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        struct slot *s = ev.tag;
        lat[done++] = now_ms() - s->start;
        /* OK only when the batch completed and a response message came. */
        if (!ev.success)
            errors[GRPC_STATUS_INTERNAL]++;
        else if (s->status == GRPC_STATUS_OK && s->recv)
            ok++;
        else if (s->status == GRPC_STATUS_OK)
            errors[GRPC_STATUS_INTERNAL]++; /* OK without a message: not an answer */
        else if (s->status >= 0 && s->status < 17)
            errors[s->status]++;
        grpc_byte_buffer_destroy(s->send);
        if (s->recv)
            grpc_byte_buffer_destroy(s->recv);
        grpc_slice_unref(s->details);
        grpc_metadata_array_destroy(&s->initial);
        grpc_metadata_array_destroy(&s->trailing);
        grpc_call_unref(s->call);
        free_slots[nfree++] = s;
    }
    double secs = (now_ms() - t0) / 1000.0;
    qsort(lat, (size_t)done, sizeof(*lat), cmp_double);
    printf("{\"requests\": %ld, \"ok\": %ld, \"errors\": {", done, ok);
    int first = 1;
    for (int c = 0; c < 17; c++)
        if (errors[c]) {
            printf("%s\"%d\": %ld", first ? "" : ", ", c, errors[c]);
            first = 0;
        }
    printf("}, \"seconds\": %.3f, \"rps\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
           "\"p999_ms\": %.3f, \"max_ms\": %.3f}\n",
           secs, done / secs, lat[done / 2], lat[(long)(done * 0.99)],
           lat[(long)(done * 0.999)], lat[done - 1]);

    grpc_slice_unref(path);
    grpc_channel_destroy(ch);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    for (size_t i = 0; i < npayloads; i++)
        grpc_slice_unref(payloads[i]);
    free(payloads);
    free(slots);
    free(free_slots);
    free(lat);
    grpc_shutdown();
    return 0;
}
