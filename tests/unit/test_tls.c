/*
 * test_tls.c - unit tests of the daemon's TLS (daemon/tls.c), with a test
 * CA that tests/common/mkca.sh makes with the openssl CLI: the context's
 * errors (missing files, a key that does not match, a bad CA), real
 * handshakes over a socketpair between a server SSL and a client SSL
 * (without client certificates; with a required one present, missing, or
 * signed by another CA; TLS 1.1 refused), the peer's CN (one, none, two),
 * a reload with a
 * broken certificate (the old context kept) and with a good one (live
 * connections unharmed), and the bufferevent_openssl wrapping: a peer's
 * close without close_notify arrives as EOF, and a silent peer hits the
 * handshake deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "../common/testpath.h"
#include "tls.h"

static char dir[256];

static const char *pki(const char *file)
{
    static char path[8][320];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, sizeof path[0], "%s/%s", dir, file);
    return p;
}

static int setup(void **state)
{
    char cmd[1024];
    const char *mkca = testpath("tests/common/mkca.sh");
    (void)state;

    if (!mkca) {
        fprintf(stderr, "tests/common/mkca.sh not found\n");
        return -1;
    }
    snprintf(dir, sizeof dir, "/tmp/test_tls.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(cmd, sizeof cmd, "bash '%s' '%s' alice", mkca, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A client context trusting the test CA, with a certificate when name is
 * "client" or "rogue", none when NULL. */
static SSL_CTX *client_ctx(const char *name)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char cert[64], key[64];

    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, pki("ca.pem"), NULL),
                     1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (name) {
        snprintf(cert, sizeof cert, "%s.pem", name);
        snprintf(key, sizeof key, "%s.key", name);
        assert_int_equal(
            SSL_CTX_use_certificate_file(ctx, pki(cert), SSL_FILETYPE_PEM), 1);
        assert_int_equal(
            SSL_CTX_use_PrivateKey_file(ctx, pki(key), SSL_FILETYPE_PEM), 1);
    }
    return ctx;
}

static tls_server *server(bool with_ca)
{
    tls_conf c = {pki("server.pem"), pki("server.key"),
                  with_ca ? pki("ca.pem") : NULL};
    tls_server *s;
    char err[512];
    if (tls_server_new(&c, &s, err, sizeof err) != 0)
        fail_msg("tls_server_new: %s", err);
    return s;
}

/* Two connected SSLs over a non-blocking socketpair. */
typedef struct pair {
    int fd[2];
    SSL *srv, *cli;
} pair;

static void pair_open(pair *p, SSL *srv, SSL_CTX *cctx)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(fcntl(p->fd[i], F_SETFL, O_NONBLOCK), 0);
    p->srv = srv;
    p->cli = SSL_new(cctx);
    assert_non_null(p->srv);
    assert_non_null(p->cli);
    SSL_set_fd(p->srv, p->fd[0]);
    SSL_set_fd(p->cli, p->fd[1]);
    SSL_set_accept_state(p->srv);
    SSL_set_connect_state(p->cli);
    assert_int_equal(SSL_set1_host(p->cli, "localhost"), 1);
}

static void pair_close(pair *p)
{
    SSL_free(p->srv);
    SSL_free(p->cli);
    close(p->fd[0]);
    close(p->fd[1]);
    ERR_clear_error();
}

/* Steps both handshakes until both are done or one fails (a bounded
 * number of rounds: each step either progresses or waits on the other
 * side, which the next step serves).  Returns 0 when the server finished
 * its handshake, -1 when it failed. */
static int pair_handshake(pair *p)
{
    int sdone = 0, cdone = 0, sfail = 0, cfail = 0;

    for (int round = 0; round < 1000 && !(sdone || sfail); round++) {
        if (!cdone && !cfail) {
            int rc = SSL_do_handshake(p->cli);
            int e = SSL_get_error(p->cli, rc);
            if (rc == 1)
                cdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                cfail = 1;
        }
        if (!sdone && !sfail) {
            int rc = SSL_do_handshake(p->srv);
            int e = SSL_get_error(p->srv, rc);
            if (rc == 1)
                sdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                sfail = 1;
        }
        if (cfail && !sdone && !sfail) {
            /* The client gave up: the server sees it at its next read. */
            close(p->fd[1]);
            p->fd[1] = -1;
        }
    }
    assert_true(sdone || sfail);
    return sdone ? 0 : -1;
}

/* Sends a line from the client and reads it on the server. */
static void pair_exchange(pair *p)
{
    char buf[64];
    int n = -1;
    assert_int_equal(SSL_write(p->cli, "ping\n", 5), 5);
    for (int i = 0; i < 1000 && n <= 0; i++) {
        n = SSL_read(p->srv, buf, sizeof buf);
        if (n <= 0) {
            int e = SSL_get_error(p->srv, n);
            assert_true(e == SSL_ERROR_WANT_READ);
            /* The client may still owe its side (TLS 1.3 tickets). */
            (void)SSL_read(p->cli, buf, 0);
        }
    }
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "ping\n", 5);
}

/* ---- contexts ---- */

static void test_ctx_errors(void **state)
{
    tls_server *s;
    char err[512];
    tls_conf c;
    (void)state;

    c = (tls_conf){pki("none.pem"), pki("server.key"), NULL};
    assert_int_equal(tls_server_new(&c, &s, err, sizeof err), -EINVAL);
    assert_null(s);
    assert_non_null(strstr(err, "tls_cert "));
    assert_non_null(strstr(err, "none.pem"));

    c = (tls_conf){pki("server.pem"), pki("none.key"), NULL};
    assert_int_equal(tls_server_new(&c, &s, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "tls_key "));

    /* A key that is not the certificate's. */
    c = (tls_conf){pki("server.pem"), pki("client.key"), NULL};
    assert_int_equal(tls_server_new(&c, &s, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "does not match tls_cert"));

    /* A key given as the certificate. */
    c = (tls_conf){pki("server.key"), pki("server.key"), NULL};
    assert_int_equal(tls_server_new(&c, &s, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "tls_cert "));

    c = (tls_conf){pki("server.pem"), pki("server.key"), pki("none.pem")};
    assert_int_equal(tls_server_new(&c, &s, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "tls_ca "));

    c = (tls_conf){NULL, pki("server.key"), NULL};
    assert_int_equal(tls_server_new(&c, &s, err, sizeof err), -EINVAL);
    assert_string_equal(err, "tls_cert is not set");
    c = (tls_conf){pki("server.pem"), "", NULL};
    assert_int_equal(tls_server_new(&c, &s, err, sizeof err), -EINVAL);
    assert_string_equal(err, "tls_key is not set");

    s = server(false);
    assert_false(tls_server_requires_cert(s));
    tls_server_free(s);
    s = server(true);
    assert_true(tls_server_requires_cert(s));
    tls_server_free(s);
}

/* ---- handshakes ---- */

static void test_handshake_without_ca(void **state)
{
    tls_server *s = server(false);
    SSL_CTX *cctx = client_ctx(NULL);
    pair p;
    char cn[64];
    (void)state;

    pair_open(&p, tls_server_ssl(s), cctx);
    assert_int_equal(pair_handshake(&p), 0);
    assert_true(SSL_version(p.srv) >= TLS1_2_VERSION);
    pair_exchange(&p);
    assert_int_equal(tls_peer_cn(p.srv, cn, sizeof cn), -ENOENT);
    pair_close(&p);

    /* A client certificate nobody asked for is not sent, so no CN. */
    SSL_CTX_free(cctx);
    cctx = client_ctx("client");
    pair_open(&p, tls_server_ssl(s), cctx);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(tls_peer_cn(p.srv, cn, sizeof cn), -ENOENT);
    pair_close(&p);
    SSL_CTX_free(cctx);
    tls_server_free(s);
}

static void test_client_cert_required(void **state)
{
    tls_server *s = server(true);
    SSL_CTX *with = client_ctx("client");
    SSL_CTX *without = client_ctx(NULL);
    SSL_CTX *rogue = client_ctx("rogue");
    SSL_CTX *nocn = client_ctx("nocn");
    SSL_CTX *twocn = client_ctx("twocn");
    pair p;
    char cn[64], tiny[4];
    (void)state;

    /* Present and signed by the CA: the CN names the user. */
    pair_open(&p, tls_server_ssl(s), with);
    assert_int_equal(pair_handshake(&p), 0);
    pair_exchange(&p);
    assert_int_equal(tls_peer_cn(p.srv, cn, sizeof cn), 0);
    assert_string_equal(cn, "alice");
    assert_int_equal(tls_peer_cn(p.srv, tiny, sizeof tiny), -ENAMETOOLONG);
    pair_close(&p);

    /* A certificate without a CN, or with two, names nobody. */
    pair_open(&p, tls_server_ssl(s), nocn);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(tls_peer_cn(p.srv, cn, sizeof cn), -EINVAL);
    pair_close(&p);
    pair_open(&p, tls_server_ssl(s), twocn);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(tls_peer_cn(p.srv, cn, sizeof cn), -EINVAL);
    pair_close(&p);

    /* Missing: the handshake fails on the server. */
    pair_open(&p, tls_server_ssl(s), without);
    assert_int_equal(pair_handshake(&p), -1);
    assert_int_equal(tls_peer_cn(p.srv, cn, sizeof cn), -ENOENT);
    pair_close(&p);

    /* Signed by a CA the server does not trust: refused too. */
    pair_open(&p, tls_server_ssl(s), rogue);
    assert_int_equal(pair_handshake(&p), -1);
    pair_close(&p);

    SSL_CTX_free(with);
    SSL_CTX_free(without);
    SSL_CTX_free(rogue);
    SSL_CTX_free(nocn);
    SSL_CTX_free(twocn);
    tls_server_free(s);
}

static void test_old_protocol_refused(void **state)
{
    tls_server *s = server(false);
    SSL_CTX *cctx = client_ctx(NULL);
    pair p;
    (void)state;

    SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(cctx, TLS1_1_VERSION);
    SSL_CTX_set_security_level(cctx, 0);
    pair_open(&p, tls_server_ssl(s), cctx);
    assert_int_equal(pair_handshake(&p), -1);
    pair_close(&p);
    SSL_CTX_free(cctx);
    tls_server_free(s);
}

/* ---- reload ---- */

static void test_reload(void **state)
{
    tls_server *s = server(false);
    SSL_CTX *cctx = client_ctx("client");
    SSL_CTX *c1, *c2;
    SSL *early;
    pair p;
    char err[512], cn[64];
    tls_conf broken = {pki("none.pem"), pki("server.key"), NULL};
    tls_conf mismatch = {pki("server.pem"), pki("client.key"), NULL};
    tls_conf with_ca = {pki("server.pem"), pki("server.key"), pki("ca.pem")};
    (void)state;

    c1 = tls_server_ctx(s);
    early = tls_server_ssl(s); /* made before the reloads */

    /* A broken certificate: a clear error, the old context kept. */
    assert_int_equal(tls_server_reload(s, &broken, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "tls_cert "));
    assert_int_equal(tls_server_reload(s, &mismatch, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "does not match"));
    c2 = tls_server_ctx(s);
    assert_ptr_equal(c1, c2);
    SSL_CTX_free(c2);
    pair_open(&p, tls_server_ssl(s), cctx);
    assert_int_equal(pair_handshake(&p), 0);
    pair_close(&p);

    /* A good one (now requiring client certificates) replaces it. */
    assert_int_equal(tls_server_reload(s, &with_ca, err, sizeof err), 0);
    assert_true(tls_server_requires_cert(s));
    c2 = tls_server_ctx(s);
    assert_ptr_not_equal(c1, c2);
    SSL_CTX_free(c2);
    pair_open(&p, tls_server_ssl(s), cctx);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(tls_peer_cn(p.srv, cn, sizeof cn), 0);
    assert_string_equal(cn, "alice");
    pair_close(&p);

    /* The SSL made before the reload still works on the old settings. */
    SSL_CTX_free(c1);
    pair_open(&p, early, cctx);
    assert_int_equal(pair_handshake(&p), 0);
    assert_int_equal(tls_peer_cn(p.srv, cn, sizeof cn), -ENOENT);
    pair_exchange(&p);
    pair_close(&p);
    SSL_CTX_free(cctx);
    tls_server_free(s);
}

/* ---- bufferevent_openssl ---- */

struct bev_state {
    struct event_base *base;
    short events; /* server events seen */
    char line[64];
    int got_line;
    int client_fd; /* closed without close_notify once the line came */
};

static void srv_read(struct bufferevent *bev, void *arg)
{
    struct bev_state *st = arg;
    size_t n;
    char *line =
        evbuffer_readln(bufferevent_get_input(bev), &n, EVBUFFER_EOL_LF);
    if (line) {
        snprintf(st->line, sizeof st->line, "%s", line);
        st->got_line = 1;
        free(line);
        /* The peer goes away without close_notify. */
        shutdown(st->client_fd, SHUT_RDWR);
    }
}

static void srv_event(struct bufferevent *bev, short what, void *arg)
{
    struct bev_state *st = arg;
    if (what & BEV_EVENT_CONNECTED) {
        tls_handshake_done(bev);
        return;
    }
    st->events = what;
    event_base_loopbreak(st->base);
}

static void cli_event(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (what & BEV_EVENT_CONNECTED)
        bufferevent_write(bev, "hello\n", 6);
}

static void safety(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void test_bufferevent_dirty_close_is_eof(void **state)
{
    tls_server *s = server(true);
    SSL_CTX *cctx = client_ctx("client");
    struct bev_state st = {0};
    struct bufferevent *sb, *cb;
    struct event *guard;
    struct timeval ten = {30, 0};
    SSL *cssl;
    int fd[2];
    (void)state;

    st.base = event_base_new();
    assert_non_null(st.base);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0);
    evutil_make_socket_nonblocking(fd[0]);
    evutil_make_socket_nonblocking(fd[1]);
    st.client_fd = fd[1];
    sb = tls_bufferevent_accept(st.base, fd[0], tls_server_ssl(s),
                                BEV_OPT_CLOSE_ON_FREE, 10000);
    assert_non_null(sb);
    bufferevent_setcb(sb, srv_read, NULL, srv_event, &st);
    bufferevent_enable(sb, EV_READ | EV_WRITE);
    cssl = SSL_new(cctx);
    cb = bufferevent_openssl_socket_new(st.base, fd[1], cssl,
                                        BUFFEREVENT_SSL_CONNECTING,
                                        BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(cb);
    bufferevent_setcb(cb, NULL, NULL, cli_event, &st);
    bufferevent_enable(cb, EV_READ | EV_WRITE);
    /* Not a timing assertion: only a guard against a hung test. */
    guard = evtimer_new(st.base, safety, st.base);
    evtimer_add(guard, &ten);

    event_base_dispatch(st.base);
    assert_true(st.got_line);
    assert_string_equal(st.line, "hello");
    /* EOF, not an error. */
    if (st.events != (BEV_EVENT_EOF | BEV_EVENT_READING))
        fail_msg("server events 0x%x, want EOF|READING (0x%x); ssl error "
                 "%lu",
                 st.events, BEV_EVENT_EOF | BEV_EVENT_READING,
                 bufferevent_get_openssl_error(sb));
    tls_close_notify(sb); /* harmless on a closed peer */
    event_free(guard);
    bufferevent_free(cb);
    bufferevent_free(sb);
    event_base_free(st.base);
    SSL_CTX_free(cctx);
    tls_server_free(s);
    ERR_clear_error();
}

static void test_bufferevent_handshake_deadline(void **state)
{
    tls_server *s = server(false);
    struct bev_state st = {0};
    struct bufferevent *sb;
    struct event *guard;
    struct timeval ten = {30, 0};
    int fd[2];
    (void)state;

    st.base = event_base_new();
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0);
    evutil_make_socket_nonblocking(fd[0]);
    /* The peer connects and never says a word. */
    sb = tls_bufferevent_accept(st.base, fd[0], tls_server_ssl(s),
                                BEV_OPT_CLOSE_ON_FREE, 50);
    assert_non_null(sb);
    bufferevent_setcb(sb, srv_read, NULL, srv_event, &st);
    bufferevent_enable(sb, EV_READ | EV_WRITE);
    guard = evtimer_new(st.base, safety, st.base);
    evtimer_add(guard, &ten);
    event_base_dispatch(st.base);
    if (!(st.events & BEV_EVENT_TIMEOUT))
        fail_msg("server events 0x%x, want a timeout", st.events);
    assert_false(st.got_line);
    event_free(guard);
    bufferevent_free(sb);
    close(fd[1]);
    event_base_free(st.base);
    tls_server_free(s);
    ERR_clear_error();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_errors),
        cmocka_unit_test(test_handshake_without_ca),
        cmocka_unit_test(test_client_cert_required),
        cmocka_unit_test(test_old_protocol_refused),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_bufferevent_dirty_close_is_eof),
        cmocka_unit_test(test_bufferevent_handshake_deadline),
    };
    /* As the daemon (main.c): OpenSSL writes with write(2), and a peer
     * gone away must be an error, not a fatal signal. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("tls", tests, setup, teardown);
}
