/* webhook/connections.c on a real evhttp and real sockets: an answer the
 * kernel cannot take at once still arrives whole before the close, the port
 * full closes a newcomer, a request trickled in too slowly is cut, and
 * shutting down with writes pending leaks nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop/loop.h"
#include "webhook/connections.h"

#define BIG (4 * 1024 * 1024)

struct server {
    struct event_base *base;
    struct evhttp *http;
    struct conns *conns;
    int port;
    int stop_after_reply; /* break the loop once the answer is queued */
};

static void on_request(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    struct evbuffer *b = evbuffer_new();
    size_t n = strcmp(evhttp_request_get_uri(req), "/big") == 0 ? BIG : 3;
    char *body = malloc(n);
    memset(body, 'x', n);
    evbuffer_add(b, body, n);
    free(body);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
    if (s->stop_after_reply)
        event_base_loopbreak(s->base);
}

static void server_start(struct server *s, int max_open, int request_s)
{
    memset(s, 0, sizeof(*s));
    s->base = event_base_new();
    loop_own_base(s->base);
    s->http = evhttp_new(s->base);
    assert_int_equal(conns_new(s->base, max_open, request_s, &s->conns), 0);
    evhttp_set_bevcb(s->http, conns_bufferevent, s->conns);
    evhttp_set_gencb(s->http, on_request, s);
    struct evhttp_bound_socket *b = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
    assert_non_null(b);
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    getsockname(evhttp_bound_socket_get_fd(b), (struct sockaddr *)&sin, &sl);
    s->port = ntohs(sin.sin_port);
}

static void server_stop(struct server *s)
{
    evhttp_free(s->http);
    conns_free(&s->conns);
    assert_null(s->conns);
    event_base_free(s->base); /* runs the filters' finalizers: the last frees the conns */
}

static void pump(struct server *s, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        event_base_loop(s->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

static int dial(const struct server *s, int rcvbuf)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Reads what the server sends until it closes; -1 if it never does. */
static long read_to_close(struct server *s, int fd, char *head, size_t headlen)
{
    long total = 0;
    char buf[65536];
    for (int i = 0; i < 20000; i++) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0)
            return total;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return total; /* reset: what came before is what arrived */
        if (n > 0) {
            if ((size_t)total < headlen)
                memcpy(head + total, buf, (size_t)n < headlen - total ? (size_t)n : headlen - total);
            total += n;
        } else
            pump(s, 1);
    }
    return -1;
}

static void test_an_answer_the_kernel_cannot_take_at_once_arrives_whole(void **state)
{
    struct server s;
    server_start(&s, 0, 0);
    int fd = dial(&s, 4096);
    const char req[] = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    /* Unread, the answer fills the socket's buffers: the rest waits in the
     * filter for room, and evhttp must not close under it. */
    pump(&s, 200);
    char head[512] = {0};
    long got = read_to_close(&s, fd, head, sizeof(head) - 1);
    char *end = strstr(head, "\r\n\r\n");
    assert_non_null(end);
    assert_non_null(strstr(head, "Content-Length: 4194304"));
    assert_int_equal(got - (end + 4 - head), BIG);
    close(fd);
    pump(&s, 20);
    struct conns_stats st;
    conns_stats(s.conns, &st);
    assert_int_equal(st.open, 0);
    server_stop(&s);
}

static void test_a_full_port_closes_the_newcomer_at_once(void **state)
{
    struct server s;
    server_start(&s, 2, 0);
    int a = dial(&s, 0), b = dial(&s, 0);
    pump(&s, 20);
    int c = dial(&s, 0);
    pump(&s, 20);
    char head[64];
    assert_int_equal(read_to_close(&s, c, head, sizeof(head)), 0);
    struct conns_stats st;
    conns_stats(s.conns, &st);
    assert_int_equal(st.cut_full, 1);
    assert_int_equal(st.open, 2);
    /* The two admitted are served. */
    const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(send(a, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    char ans[256] = {0};
    assert_true(read_to_close(&s, a, ans, sizeof(ans) - 1) > 0);
    assert_memory_equal(ans, "HTTP/1.1 200", 12);
    close(a);
    close(b);
    close(c);
    pump(&s, 20);
    conns_stats(s.conns, &st);
    assert_int_equal(st.open, 0);
    server_stop(&s);
}

static void test_a_request_trickled_in_too_slowly_is_cut(void **state)
{
    struct server s;
    server_start(&s, 0, 1);
    int fd = dial(&s, 0);
    assert_int_equal(send(fd, "GET / HTTP/1.1\r\n", 16, 0), 16);
    pump(&s, 20);
    for (int i = 0; i < 6; i++) { /* a byte every 250 ms: never idle, but slow */
        usleep(250000);
        send(fd, "X", 1, MSG_NOSIGNAL);
        pump(&s, 5);
    }
    char head[64];
    assert_int_equal(read_to_close(&s, fd, head, sizeof(head)), 0);
    struct conns_stats st;
    conns_stats(s.conns, &st);
    assert_int_equal(st.cut_slow, 1);
    close(fd);
    server_stop(&s);
}

static void test_shutting_down_with_an_answer_pending_leaks_nothing(void **state)
{
    struct server s;
    server_start(&s, 0, 0);
    s.stop_after_reply = 1;
    int fd = dial(&s, 0);
    const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    for (int i = 0; i < 2000 && !event_base_got_break(s.base); i++)
        pump(&s, 1);
    assert_true(event_base_got_break(s.base));
    server_stop(&s); /* the write poke still pending; ASan reports any leak */
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_answer_the_kernel_cannot_take_at_once_arrives_whole),
        cmocka_unit_test(test_a_full_port_closes_the_newcomer_at_once),
        cmocka_unit_test(test_a_request_trickled_in_too_slowly_is_cut),
        cmocka_unit_test(test_shutting_down_with_an_answer_pending_leaks_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
