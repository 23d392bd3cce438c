/*
 * fuzz_broker.c - libFuzzer harness for the whole request path: framing,
 * parsing, dispatch, every handler, parking, answers and session ends,
 * against an in-process broker (the daemon's own srv_new/srv_run on a
 * thread of this process, listening on 127.0.0.1 and an ephemeral port)
 * with several sessions and random disconnects.
 *
 * The in-process entry point is the daemon's public one (daemon.h):
 * rt_start + disp_init + srv_new + srv_run, exactly as main.c does, so no
 * hook was needed.  Sessions are real loopback connections: the server
 * code under test is the same as in production, including libevent.
 *
 * Input format: a sequence of records [ctl][len][len bytes of data]:
 *   ctl & 3         the session (0..3)
 *   (ctl >> 2) & 3  0, 1: write the data; 2: reset the connection and
 *                   reconnect (a crashed client); 3: write, then close
 *                   (a client that sends and leaves).
 * At the end, each session still open gets a sentinel ping and must answer
 * it within 10 s (else: a hang, reported with abort()); then all sessions
 * close.  Requests that wait are cancelled by the close, as for a real
 * client.  The harness caps timeouts it cannot see inside the data by
 * nothing at all: a parked request simply stays parked until its session
 * closes, which is the behaviour under test.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/thread.h>

#include "daemon.h"

#define NSESS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static srv *fb_srv;
static int fb_port;
static pthread_t fb_thread;

static void *fb_run(void *arg)
{
    (void)arg;
    srv_run(fb_srv);
    return NULL;
}

/* Starts the broker once per process. */
static void fb_init(void)
{
    static bool done;
    rt_config rc = {0};
    char err[256];
    conf c;

    if (done)
        return;
    done = true;
    signal(SIGPIPE, SIG_IGN);
    conf_defaults(&c);
    c.port = 0;
    c.log_level = getenv("FUZZ_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR;
    /* Small limits, so that the limit paths are reached too. */
    c.max_line = 8192;
    c.max_depth = 16;
    c.max_value = 1024;
    c.max_conns = 64;
    c.max_objects = 2000;
    c.max_outbuf = 65536;
    c.max_batch = 16;
    c.max_select = 16;
    log_set_level(c.log_level);
    evthread_use_pthreads();
    json_object_seed(1);
    rc.gomaxprocs = 2;
    rc.stack_size = 256 * 1024;
    if (rt_start(&rc) != 0 || disp_init() != 0)
        abort();
    fb_srv = srv_new(&c, -1, err, sizeof err);
    if (!fb_srv) {
        fprintf(stderr, "fuzz_broker: %s\n", err);
        abort();
    }
    fb_port = srv_port(fb_srv);
    if (pthread_create(&fb_thread, NULL, fb_run, NULL) != 0)
        abort();
}

static int fb_connect(void)
{
    struct sockaddr_in sa = {0};
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        abort();
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)fb_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Hundreds of thousands of short connections exhaust the ephemeral
     * ports (TIME_WAIT): wait for some to free up rather than report a
     * harness failure as a finding. */
    for (int tries = 0; connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0;
         tries++) {
        if (errno == EINTR) {
            /* libFuzzer's -timeout alarm: the connect goes on without us;
             * wait for it to finish. */
            struct pollfd p = {fd, POLLOUT, 0};
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            while (poll(&p, 1, 5000) < 0 && errno == EINTR)
                ;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
                soerr == 0)
                break;
            errno = soerr;
        }
        if (errno != EADDRNOTAVAIL || tries == 2000) {
            fprintf(stderr, "fuzz_broker: connect: %s\n", strerror(errno));
            abort();
        }
        usleep(5000);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void fb_reset(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* Reads and discards whatever answers are ready (never blocks). */
static void fb_drain(int fd)
{
    char buf[65536];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
        ;
}

static void fb_write(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            /* The daemon is slow to read, or we are slow: read answers
             * so that neither side's buffers stay full. */
            fb_drain(fd);
            struct pollfd p2 = {fd, POLLOUT, 0};
            poll(&p2, 1, 10);
            continue;
        }
        if (w <= 0)
            return; /* the daemon closed it (line too long, ...) */
        p += w;
        n -= (size_t)w;
    }
}

/* Sends a sentinel ping and reads until its answer or EOF.  Returns false
 * when neither came within 10 s. */
static bool fb_sentinel(int fd)
{
    static const char ping[] = "\n{\"jsonrpc\":\"2.0\",\"id\":\"fuzz-"
                               "sentinel\",\"method\":\"ping\"}\n";
    char buf[65536], tail[64] = "";
    size_t tl = 0;

    fb_write(fd, (const uint8_t *)ping, sizeof ping - 1);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, 10000);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
            return true; /* closed by the daemon: also an answer */
        buf[n] = '\0';
        if (memmem(buf, (size_t)n, "fuzz-sentinel", 13))
            return true;
        /* The marker may straddle two reads. */
        char join[160];
        size_t k = (size_t)n < 64 ? (size_t)n : 64;
        memcpy(join, tail, tl);
        memcpy(join + tl, buf, k);
        if (memmem(join, tl + k, "fuzz-sentinel", 13))
            return true;
        tl = k;
        memcpy(tail, buf + n - k, k);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds[NSESS];
    size_t i = 0;

    fb_init();
    for (int s = 0; s < NSESS; s++)
        fds[s] = -1;
    while (i + 2 <= size) {
        int ctl = data[i], s = ctl & 3, op = (ctl >> 2) & 3;
        size_t len = data[i + 1];
        const uint8_t *p = data + i + 2;
        if (len > size - i - 2)
            len = size - i - 2;
        i += 2 + len;
        if (fds[s] < 0)
            fds[s] = fb_connect();
        switch (op) {
        case 2:
            fb_reset(fds[s]);
            fds[s] = fb_connect();
            break;
        case 3:
            fb_write(fds[s], p, len);
            close(fds[s]);
            fds[s] = -1;
            break;
        default:
            fb_write(fds[s], p, len);
            fb_drain(fds[s]);
            break;
        }
    }
    for (int s = 0; s < NSESS; s++) {
        if (fds[s] < 0)
            continue;
        if (!fb_sentinel(fds[s])) {
            fprintf(stderr,
                    "fuzz_broker: session %d got no answer to its "
                    "sentinel ping within 10 s\n",
                    s);
            abort();
        }
        close(fds[s]);
    }
    return 0;
}
