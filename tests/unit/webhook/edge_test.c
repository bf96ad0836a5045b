/* webhook/edge.c: framing the port refuses, exact media types, and an
 * out-of-descriptors listener that pauses instead of spinning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "webhook/edge.h"

static struct evkeyvalq *headers_of(const char *const *kv, size_t n)
{
    static struct evkeyvalq h;
    h.tqh_first = NULL;
    h.tqh_last = &h.tqh_first;
    for (size_t i = 0; i < n; i++)
        evhttp_add_header(&h, kv[2 * i], kv[2 * i + 1]);
    return &h;
}

static int framing(const char *const *kv, size_t n, const char **why)
{
    struct evkeyvalq *h = headers_of(kv, n);
    int rc = edge_check_framing(h, why);
    evhttp_clear_headers(h);
    return rc;
}

static void test_framing(void **state)
{
    const char *why;
    const char *good[] = {"Host", "x", "Content-Type", "application/x-www-form-urlencoded",
                          "Content-Length", "12", "X-Twilio-Signature", "abc"};
    assert_int_equal(framing(good, 4, &why), 0);
    const char *two_lengths[] = {"Content-Length", "12", "content-length", "12"};
    assert_int_equal(framing(two_lengths, 2, &why), 400);
    assert_non_null(strstr(why, "Content-Length"));
    const char *both[] = {"Content-Length", "12", "Transfer-Encoding", "chunked"};
    assert_int_equal(framing(both, 2, &why), 400);
    const char *two_types[] = {"Content-Type", "application/json", "Content-Type",
                               "application/x-www-form-urlencoded"};
    assert_int_equal(framing(two_types, 2, &why), 400);
    const char *many[2 * (EDGE_MAX_HEADERS + 1)];
    char names[EDGE_MAX_HEADERS + 1][16];
    for (int i = 0; i <= EDGE_MAX_HEADERS; i++) {
        snprintf(names[i], sizeof(names[i]), "X-H%d", i);
        many[2 * i] = names[i];
        many[2 * i + 1] = "v";
    }
    assert_int_equal(framing(many, EDGE_MAX_HEADERS, &why), 0);
    assert_int_equal(framing(many, EDGE_MAX_HEADERS + 1, &why), 431);
}

static void test_media_type(void **state)
{
    assert_int_equal(edge_media_type("application/x-www-form-urlencoded"), EDGE_MEDIA_FORM);
    assert_int_equal(edge_media_type("Application/X-WWW-Form-URLEncoded; charset=UTF-8"),
                     EDGE_MEDIA_FORM);
    assert_int_equal(edge_media_type(" application/json ;charset=utf-8"), EDGE_MEDIA_JSON);
    assert_int_equal(edge_media_type("application/x-www-form-urlencodedXX"), EDGE_MEDIA_OTHER);
    assert_int_equal(edge_media_type("application/jsonp"), EDGE_MEDIA_OTHER);
    assert_int_equal(edge_media_type("text/plain"), EDGE_MEDIA_OTHER);
    assert_int_equal(edge_media_type(""), EDGE_MEDIA_OTHER);
    assert_int_equal(edge_media_type(NULL), EDGE_MEDIA_OTHER);
}

/* --- the guard, on a real listener with the descriptors used up --- */

static int accepted;

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *a, int len,
                      void *arg)
{
    accepted++;
    close(fd);
}

static void test_out_of_descriptors_pauses_and_sheds(void **state)
{
    struct event_base *base = event_base_new();
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct evconnlistener *lev = evconnlistener_new_bind(
        base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
        (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(lev);
    socklen_t sl = sizeof(sin);
    getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&sin, &sl);
    struct edge_guard *g;
    assert_int_equal(edge_guard_new(base, lev, &g), 0);

    /* A client waits in the backlog; then no descriptor is left free, so
     * accept() fails with EMFILE. */
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(client, (struct sockaddr *)&sin, sizeof(sin)), 0);
    low = old;
    low.rlim_cur = old.rlim_cur < 256 ? old.rlim_cur : 256;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    static int hog[256];
    int nhog = 0;
    while (nhog < 256 && (hog[nhog] = dup(0)) >= 0)
        nhog++;
    assert_int_equal(errno, EMFILE);

    for (int i = 0; i < 50; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(accepted, 0);
    /* The waiting connection was shed through the reserve: the client sees
     * its end closed rather than hanging. */
    char byte;
    struct timeval tv = {2, 0};
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(recv(client, &byte, 1, 0), 0);

    for (int i = 0; i < nhog; i++)
        close(hog[i]);
    setrlimit(RLIMIT_NOFILE, &old);
    close(client);
    /* Descriptors back: after its pause the listener accepts again. */
    int c2 = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(c2, (struct sockaddr *)&sin, sizeof(sin)), 0);
    for (int i = 0; i < 200 && !accepted; i++) {
        usleep(10000);
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    assert_int_equal(accepted, 1);
    close(c2);
    edge_guard_free(&g);
    evconnlistener_free(lev);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_media_type),
        cmocka_unit_test(test_out_of_descriptors_pauses_and_sheds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
