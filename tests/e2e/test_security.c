/*
 * test_security.c - end-to-end: issue 17.  The real daemon with a users
 * file (hashes made by `chand --hash-password`), its unix socket and TLS
 * listener, driven over TCP, the unix socket and OpenSSL.  Covers
 * everything that works as before without users, `unauthenticated` before
 * authentication, `denied` outside the rules (and that it changed
 * nothing), prefix boundaries, nested requests (go, timer.afterfunc),
 * list and runtime.dump filtered, uid mapping over the unix socket, its
 * mode, a stale socket file and a live one, the users file's reload, the
 * pre-authentication deadline and line limit, hostile input before
 * authentication, protected mode and its override, the slowdown of
 * brute-force attempts (counted, not timed), and TLS: plain, a required
 * client certificate present, missing and from a rogue CA, CN mapping,
 * a dirty shutdown and the handshake deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <event2/event.h>

#include "chand.h"

#include "../common/e2e.h"
#include "../common/testd.h"

#define WAIT_MS 15000

static char tdir[64];   /* this run's directory */
static char hash[256];  /* the hash of "secret" */
static char hash2[256]; /* the hash of "other" */
static char users[128], logf[128], sock[128];

static const char *chand_bin(void)
{
    const char *b = getenv("CHAND_BIN");
    return b && *b ? b : "build/chand";
}

/* Hashes pw with `chand --hash-password` into out. */
static void hash_password(const char *pw, char *out, size_t len)
{
    char cmd[512];
    FILE *p;

    snprintf(cmd, sizeof cmd, "printf '%%s\\n' '%s' | %s --hash-password", pw,
             chand_bin());
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(out, (int)len, p));
    assert_int_equal(pclose(p), 0);
    out[strcspn(out, "\n")] = '\0';
    assert_true(strncmp(out, "$y$", 3) == 0);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tdir, sizeof tdir, "/tmp/test_security.XXXXXX");
    if (!mkdtemp(tdir))
        return -1;
    snprintf(users, sizeof users, "%s/users", tdir);
    snprintf(logf, sizeof logf, "%s/log", tdir);
    snprintf(sock, sizeof sock, "%s/chand.sock", tdir);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf %s", tdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    testd_close_all();
    testd_kill_children(true);
    unlink(logf);
    return 0;
}

/* Writes the users file (printf-style; mode 0600). */
static void __attribute__((format(printf, 1, 2)))
write_users(const char *fmt, ...)
{
    char tmp[160];
    va_list ap;
    FILE *f;

    if (!hash[0]) {
        hash_password("secret", hash, sizeof hash);
        hash_password("other", hash2, sizeof hash2);
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", users);
    f = fopen(tmp, "w");
    assert_non_null(f);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(tmp, 0600), 0);
    assert_int_equal(rename(tmp, users), 0);
}

/* The usual users: alice may read everything and write jobs.; bob may
 * lock under locks. and write bob.; root (this uid) may do anything. */
static void write_default_users(void)
{
    write_users("# test users\n"
                "alice %s rw:jobs. r:*\n"
                "bob   %s l:locks. w:bob. w:afterfunc.\n"
                "me    -  uid=%u rwla:*\n",
                hash, hash, (unsigned)getuid());
}

/* Starts D with the users file, the unix socket and extra args (NULL-
 * terminated, may be NULL); its stderr goes to logf. */
static void start(const char *const *extra)
{
    const char *args[32];
    int n = 0;
    testd_opts o = {0};

    args[n++] = "--users-file";
    args[n++] = users;
    args[n++] = "--unix-socket";
    args[n++] = sock;
    args[n++] = "--log-level";
    args[n++] = "info";
    for (int i = 0; extra && extra[i] && n < 30; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    o.args = args;
    o.log = logf;
    assert_int_equal(testd_start_opts(&D, &o), 0);
}

static void stop(void)
{
    testd_close_all();
    assert_int_equal(testd_stop(&D), 0);
}

/* Returns true once the daemon's log holds needle (polled until WAIT_MS). */
static bool log_has(const char *needle)
{
    return testd_file_has(logf, needle, WAIT_MS);
}

/* Counts the log's lines holding needle now. */
static int log_count(const char *needle)
{
    FILE *f = fopen(logf, "r");
    char line[2048];
    int n = 0;

    while (f && fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    if (f)
        fclose(f);
    return n;
}

static void auth_ok(testd_conn *c, const char *user, const char *pw)
{
    char p[256];

    snprintf(p, sizeof p, "{\"user\":\"%s\",\"password\":\"%s\"}", user, pw);
    json_t *r = e2e_ok(c, 0, "auth", p);
    assert_string_equal(json_string_value(json_object_get(r, "user")), user);
}

static testd_conn *login(const char *user, const char *pw)
{
    testd_conn *c = testd_connect(&D);

    assert_non_null(c);
    auth_ok(c, user, pw);
    return c;
}

/* runtime.stats' security.<group>.<key> (group NULL: security.<key>),
 * read on u (a session allowed to). */
static json_int_t sec_stat(testd_conn *u, const char *group, const char *key)
{
    json_t *s =
        json_object_get(e2e_ok(u, 0, "runtime.stats", NULL), "security");

    assert_non_null(s);
    if (group)
        s = json_object_get(s, group);
    assert_true(json_is_integer(json_object_get(s, key)));
    return json_integer_value(json_object_get(s, key));
}

/* Polls sec_stat until it is at least want (WAIT_MS); returns it. */
static json_int_t sec_stat_reaches(testd_conn *u, const char *group,
                                   const char *key, json_int_t want)
{
    int64_t end = testd_now_ms() + WAIT_MS;
    json_int_t v;

    while ((v = sec_stat(u, group, key)) < want && testd_now_ms() < end)
        testd_sleep_ms(5);
    return v;
}

/* ------------------------------------------------------------------ */
/* Without users                                                      */
/* ------------------------------------------------------------------ */

static void test_no_users_open(void **state)
{
    (void)state;
    const char *args[] = {"--unix-socket", sock, NULL};
    testd_opts o = {.args = args, .log = logf};
    testd_conn *c, *u;

    assert_int_equal(testd_start_opts(&D, &o), 0);
    c = testd_connect(&D);
    assert_non_null(c);
    e2e_ok(c, 1, "make", "{\"name\":\"q\",\"cap\":1}");
    e2e_ok(c, 2, "send", "{\"name\":\"q\",\"value\":1}");
    e2e_expect_reason(c, 3, "auth", "{\"user\":\"a\",\"password\":\"b\"}",
                      "misuse");
    /* hello's credentials are ignored when there are no users */
    e2e_ok(c, 4, "hello", "{\"version\":1,\"user\":\"a\",\"password\":\"b\"}");
    /* the unix socket serves too, and its peers have every right */
    u = testd_connect_unix(sock);
    assert_non_null(u);
    assert_int_equal(e2e_ok_int(u, 5, "len", "{\"name\":\"q\"}", "len"), 1);
    e2e_ok(u, 6, "drop", "{\"name\":\"q\"}");
    stop();
}

/* ------------------------------------------------------------------ */
/* unauthenticated, denied                                            */
/* ------------------------------------------------------------------ */

static void test_unauthenticated(void **state)
{
    (void)state;
    testd_conn *c;
    json_t *a;

    write_default_users();
    start(NULL);
    c = testd_connect(&D);
    assert_non_null(c);
    e2e_ok(c, 1, "ping", NULL);
    e2e_ok(c, 2, "hello", "{\"version\":1}");
    e2e_expect_reason(c, 3, "make", "{\"name\":\"jobs.a\"}", "unauthenticated");
    a = e2e_call(c, 4, "list", NULL);
    e2e_check_reason(a, "unauthenticated", "authenticate first");
    assert_int_equal(testd_code(a), -32015);
    json_decref(a);
    e2e_expect_reason(c, 5, "runtime.stats", "{}", "unauthenticated");
    e2e_expect_reason(c, 6, "go", "{\"request\":{\"method\":\"ping\"}}",
                      "unauthenticated");
    /* a batch: every member checked */
    assert_int_equal(
        testd_send(c, "[{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"},"
                      "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"make\","
                      "\"params\":{\"name\":\"jobs.b\"}}]"),
        0);
    a = testd_recv(c, WAIT_MS);
    assert_true(json_is_array(a));
    assert_non_null(testd_result(json_array_get(a, 0)));
    assert_string_equal(testd_reason(json_array_get(a, 1)), "unauthenticated");
    json_decref(a);
    /* wrong passwords, unknown users */
    e2e_expect_reason(c, 9, "auth",
                      "{\"user\":\"alice\",\"password\":\"nope\"}",
                      "unauthenticated");
    e2e_expect_reason(c, 10, "auth",
                      "{\"user\":\"nobody\",\"password\":\"secret\"}",
                      "unauthenticated");
    e2e_expect_reason(c, 11, "auth", "{\"user\":\"alice\"}", "invalid");
    e2e_expect_reason(c, 12, "make", "{\"name\":\"jobs.a\"}",
                      "unauthenticated");
    assert_true(log_has("authentication failed for user \"nobody\""));
    /* hello with credentials authenticates */
    a = e2e_call(c, 13, "hello",
                 "{\"version\":1,\"user\":\"alice\",\"password\":\"secret\"}");
    assert_string_equal(
        json_string_value(json_object_get(testd_result(a), "user")), "alice");
    json_decref(a);
    e2e_ok(c, 14, "make", "{\"name\":\"jobs.a\"}");
    /* auth in a batch is refused */
    assert_int_equal(
        testd_send(c, "[{\"jsonrpc\":\"2.0\",\"id\":15,\"method\":\"auth\","
                      "\"params\":{\"user\":\"bob\",\"password\":\"secret\""
                      "}}]"),
        0);
    a = testd_recv(c, WAIT_MS);
    assert_string_equal(testd_reason(json_array_get(a, 0)), "misuse");
    json_decref(a);
    stop();
}

/* A request pipelined right behind auth runs as the new user. */
static void test_pipelined_after_auth(void **state)
{
    (void)state;
    testd_conn *c;

    write_default_users();
    start(NULL);
    c = testd_connect(&D);
    assert_non_null(c);
    assert_int_equal(
        testd_send(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"auth\","
                      "\"params\":{\"user\":\"alice\",\"password\":\"secret\""
                      "}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"make\","
                      "\"params\":{\"name\":\"jobs.p\"}}"),
        0);
    json_t *a1 = testd_wait_id(c, 1, WAIT_MS),
           *a2 = testd_wait_id(c, 2, WAIT_MS);
    assert_non_null(testd_result(a1));
    assert_non_null(testd_result(a2));
    json_decref(a1);
    json_decref(a2);
    stop();
}

static void test_denied_changes_nothing(void **state)
{
    (void)state;
    testd_conn *root, *alice, *bob;
    json_t *a;
    json_int_t procs;

    write_default_users();
    start(NULL);
    root = testd_connect_unix(sock); /* "me", by uid */
    assert_non_null(root);
    e2e_ok(root, 1, "make", "{\"name\":\"ops.q\",\"cap\":2}");
    e2e_ok(root, 2, "send", "{\"name\":\"ops.q\",\"value\":\"job\"}");
    e2e_ok(root, 3, "make", "{\"name\":\"jobs.q\",\"cap\":2}");
    e2e_ok(root, 4, "send", "{\"name\":\"jobs.q\",\"value\":\"x\"}");
    e2e_ok(root, 5, "wg.add", "{\"name\":\"team\",\"delta\":3}");
    e2e_ok(root, 6, "mutex.lock", "{\"name\":\"locks.deploy\"}");
    e2e_ok(root, 7, "map.store",
           "{\"name\":\"cfg\",\"key\":\"k\",\"value\":1}");
    procs = e2e_ok_int(root, 8, "runtime.gomaxprocs", NULL, "previous");

    alice = login("alice", "secret");
    bob = login("bob", "secret");
    /* alice: read everything, write only jobs. */
    a = e2e_call(alice, 10, "recv", "{\"name\":\"ops.q\"}");
    e2e_check_reason(a, "denied", "needs w");
    assert_int_equal(testd_code(a), -32016);
    json_decref(a);
    e2e_expect_reason(alice, 11, "drop", "{\"name\":\"jobs.q\"}", "denied");
    e2e_expect_reason(alice, 12, "close", "{\"name\":\"ops.q\"}", "denied");
    e2e_expect_reason(alice, 13, "wg.add", "{\"name\":\"team\",\"delta\":-3}",
                      "denied");
    e2e_expect_reason(alice, 14, "mutex.unlock",
                      "{\"name\":\"locks.deploy\",\"token\":1}", "denied");
    e2e_expect_reason(alice, 15, "once.done", "{\"name\":\"migrate\"}",
                      "denied");
    e2e_expect_reason(alice, 16, "runtime.gomaxprocs", "{\"n\":1}", "denied");
    e2e_expect_reason(alice, 17, "map.store",
                      "{\"name\":\"cfg\",\"key\":\"k\",\"value\":2}", "denied");
    assert_int_equal(
        e2e_ok_int(alice, 18, "len", "{\"name\":\"ops.q\"}", "len"), 1);
    e2e_ok(alice, 19, "map.load", "{\"name\":\"cfg\",\"key\":\"k\"}");
    e2e_ok(alice, 20, "runtime.stats", NULL);
    e2e_ok(alice, 21, "runtime.gomaxprocs", NULL);
    e2e_ok(alice, 22, "recv", "{\"name\":\"jobs.q\"}");
    /* bob: locks under locks. only, no reading */
    e2e_expect_reason(bob, 30, "len", "{\"name\":\"ops.q\"}", "denied");
    e2e_expect_reason(bob, 31, "runtime.stats", "{}", "denied");
    e2e_expect_reason(bob, 32, "mutex.lock", "{\"name\":\"other\"}", "denied");
    e2e_expect_reason(bob, 33, "wg.done", "{\"name\":\"team\"}", "denied");
    /* nothing changed */
    assert_int_equal(e2e_ok_int(root, 40, "len", "{\"name\":\"ops.q\"}", "len"),
                     1);
    a = e2e_ok(root, 41, "list", "{\"prefix\":\"team\"}");
    assert_int_equal(
        json_integer_value(json_object_get(
            json_array_get(json_object_get(a, "objects"), 0), "count")),
        3);
    e2e_expect_reason(root, 42, "mutex.lock",
                      "{\"name\":\"locks.deploy\",\"timeout_ms\":0}",
                      "timeout");
    assert_false(e2e_ok_bool(root, 43, "once.do",
                             "{\"name\":\"migrate\",\"timeout_ms\":0}",
                             "done"));
    a = e2e_ok(root, 44, "map.load", "{\"name\":\"cfg\",\"key\":\"k\"}");
    assert_int_equal(json_integer_value(json_object_get(a, "value")), 1);
    assert_int_equal(
        e2e_ok_int(root, 45, "runtime.gomaxprocs", NULL, "previous"), procs);
    stop();
}

static void test_prefix_boundaries(void **state)
{
    (void)state;
    testd_conn *root, *c;

    write_users("p %s rw:jobs. w:job l:locks.* w:bob. w:afterfunc.\n"
                "q %s l:cv w:ch.a\n"
                "me - uid=%u rwla:*\n",
                hash, hash, (unsigned)getuid());
    start(NULL);
    root = testd_connect_unix(sock);
    assert_non_null(root);
    c = login("p", "secret");
    e2e_ok(c, 1, "make", "{\"name\":\"jobs.a\"}");
    e2e_ok(c, 2, "make", "{\"name\":\"jobs\"}");  /* w:job covers it */
    e2e_ok(c, 3, "make", "{\"name\":\"jobsx\"}"); /* w:job covers it */
    e2e_expect_reason(c, 4, "make", "{\"name\":\"jo\"}", "denied");
    e2e_expect_reason(c, 5, "len", "{\"name\":\"jobs\"}", "denied");
    e2e_ok(c, 6, "len", "{\"name\":\"jobs.a\"}");
    e2e_ok(c, 7, "mutex.lock", "{\"name\":\"locks.a\"}"); /* locks.* */
    e2e_expect_reason(c, 8, "mutex.lock", "{\"name\":\"locks\"}", "denied");
    /* select: every case's channel needs w; a denied case takes nothing */
    e2e_ok(root, 9, "make", "{\"name\":\"sec.x\",\"cap\":1}");
    e2e_ok(root, 10, "send", "{\"name\":\"sec.x\",\"value\":7}");
    e2e_expect_reason(c, 11, "select",
                      "{\"cases\":[{\"recv\":\"jobs.a\"},"
                      "{\"recv\":\"sec.x\"}],\"default\":true}",
                      "denied");
    assert_int_equal(e2e_ok_int(root, 12, "len", "{\"name\":\"sec.x\"}", "len"),
                     1);
    /* go: the nested request, checked when made */
    e2e_expect_reason(c, 13, "go",
                      "{\"request\":{\"method\":\"recv\",\"params\":"
                      "{\"name\":\"sec.x\"}}}",
                      "denied");
    e2e_expect_reason(c, 14, "go",
                      "{\"request\":{\"method\":\"go\",\"params\":{\"request\":"
                      "{\"method\":\"close\",\"params\":{\"name\":\"sec.x\"}"
                      "}}}}",
                      "denied");
    e2e_ok(c, 15, "go",
           "{\"request\":{\"method\":\"send\",\"params\":"
           "{\"name\":\"jobs.a\",\"value\":1}}}");
    /* timer.afterfunc: w on afterfunc. and the nested request */
    e2e_expect_reason(c, 16, "timer.afterfunc",
                      "{\"ms\":1,\"request\":{\"method\":\"close\","
                      "\"params\":{\"name\":\"sec.x\"}}}",
                      "denied");
    e2e_ok(c, 17, "timer.afterfunc",
           "{\"ms\":100000,\"request\":{\"method\":\"make\","
           "\"params\":{\"name\":\"bob.t\"}}}");
    assert_int_equal(e2e_ok_int(root, 18, "len", "{\"name\":\"sec.x\"}", "len"),
                     1);
    testd_close(c);
    /* cond.wait needs l on the mutex too */
    c = login("q", "secret");
    e2e_expect_reason(c, 20, "cond.wait",
                      "{\"name\":\"cv\",\"mutex\":\"m\",\"timeout_ms\":0}",
                      "denied");
    /* a rule on ch.a does not cover ch.b nor ch. */
    e2e_expect_reason(c, 21, "make", "{\"name\":\"ch.b\"}", "denied");
    e2e_expect_reason(c, 22, "make", "{\"name\":\"ch.\"}", "denied");
    e2e_ok(c, 23, "make", "{\"name\":\"ch.a\"}");
    stop();
}

static int names_in(json_t *result, const char *name)
{
    json_t *o;
    size_t i;
    int n = 0;

    json_array_foreach(json_object_get(result, "objects"), i, o)
    {
        if (!strcmp(json_string_value(json_object_get(o, "name")), name))
            n++;
    }
    return n;
}

static void test_list_dump_filtered(void **state)
{
    (void)state;
    testd_conn *root, *c;
    json_t *r;

    write_users("reader %s r:pub. w:pub.\nnobody %s w:x.\nme - uid=%u rwla:*\n",
                hash, hash, (unsigned)getuid());
    start(NULL);
    root = testd_connect_unix(sock);
    assert_non_null(root);
    e2e_ok(root, 1, "make", "{\"name\":\"pub.a\"}");
    e2e_ok(root, 2, "make", "{\"name\":\"secret.b\"}");
    e2e_ok(root, 3, "atomic.add", "{\"name\":\"pub.n\",\"delta\":1}");
    r = e2e_ok(root, 4, "list", NULL);
    assert_int_equal(names_in(r, "secret.b"), 1);
    c = login("reader", "secret");
    r = e2e_ok(c, 5, "list", NULL);
    assert_int_equal(json_array_size(json_object_get(r, "objects")), 2);
    assert_int_equal(names_in(r, "pub.a"), 1);
    assert_int_equal(names_in(r, "secret.b"), 0);
    r = e2e_ok(c, 6, "list", "{\"prefix\":\"secret\"}");
    assert_int_equal(json_array_size(json_object_get(r, "objects")), 0);
    r = e2e_ok(c, 7, "runtime.dump", NULL);
    assert_int_equal(names_in(r, "pub.n"), 1);
    assert_int_equal(names_in(r, "secret.b"), 0);
    testd_close(c);
    c = login("nobody", "secret");
    r = e2e_ok(c, 8, "list", NULL);
    assert_int_equal(json_array_size(json_object_get(r, "objects")), 0);
    stop();
}

/* ------------------------------------------------------------------ */
/* The unix socket                                                    */
/* ------------------------------------------------------------------ */

/* Leaves a socket file nobody listens on at path (a killed daemon's). */
static void make_stale_socket(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_true(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    close(fd); /* the file stays */
}

static void test_unix_socket(void **state)
{
    (void)state;
    struct stat st;
    testd_conn *u, *t;
    testd d2;
    const char *args2[] = {"--unix-socket", sock, NULL};
    testd_opts o2 = {.args = args2, .log = logf};

    write_default_users();
    make_stale_socket(sock);
    start(NULL);
    assert_true(log_has("removed the stale unix socket"));
    assert_int_equal(stat(sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
    /* this uid is "me": no auth needed, every right */
    u = testd_connect_unix(sock);
    assert_non_null(u);
    e2e_ok(u, 1, "make", "{\"name\":\"any\"}");
    e2e_ok(u, 2, "runtime.gomaxprocs", NULL);
    assert_true(log_has("is user me"));
    /* over TCP, the same process is nobody until it authenticates */
    t = testd_connect(&D);
    assert_non_null(t);
    e2e_expect_reason(t, 3, "len", "{\"name\":\"any\"}", "unauthenticated");
    /* a second daemon on the same socket refuses to start */
    memset(&d2, 0, sizeof d2);
    assert_int_equal(testd_start_opts(&d2, &o2), -1);
    assert_true(log_has("another process listens on it"));
    stop();
    /* removed at exit */
    assert_int_equal(stat(sock, &st), -1);
    assert_int_equal(errno, ENOENT);

    /* mode as configured; a gid= mapping when the uid has none */
    write_users("grp - gid=%u r:*\n", (unsigned)getgid());
    {
        const char *a[] = {"--unix-socket-mode", "0600", NULL};
        start(a);
    }
    assert_int_equal(stat(sock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    u = testd_connect_unix(sock);
    e2e_ok(u, 4, "list", NULL);
    e2e_expect_reason(u, 5, "make", "{\"name\":\"n\"}", "denied");
    stop();
}

/* Socket activation with two sockets, TCP and unix (chand.socket): told
 * apart by their addresses; the unix one maps uids as its own would. */
static void test_activation_two_sockets(void **state)
{
    (void)state;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    socklen_t sl = sizeof sa;
    int tfd = socket(AF_INET, SOCK_STREAM, 0);
    int ufd = socket(AF_UNIX, SOCK_STREAM, 0);
    const char *args[] = {"--users-file", users, "--log-level", "info", NULL};
    testd_opts o = {.args = args, .log = logf};
    testd_conn *t, *u;

    write_default_users();
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(tfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(tfd, 16), 0);
    assert_int_equal(getsockname(tfd, (struct sockaddr *)&sa, &sl), 0);
    unlink(sock);
    memcpy(su.sun_path, sock, strlen(sock) + 1);
    assert_int_equal(bind(ufd, (struct sockaddr *)&su, sizeof su), 0);
    assert_int_equal(listen(ufd, 16), 0);
    o.listen_fd = tfd;
    o.listen_fd2 = ufd;
    assert_int_equal(testd_start_opts(&D, &o), 0);
    close(tfd);
    close(ufd);
    assert_true(log_has("listening on the 2 sockets passed by systemd"));
    u = testd_connect_unix(sock);
    assert_non_null(u);
    e2e_ok(u, 1, "make", "{\"name\":\"act\"}"); /* uid -> me */
    t = testd_connect(&D);
    assert_non_null(t);
    e2e_expect_reason(t, 2, "len", "{\"name\":\"act\"}", "unauthenticated");
    auth_ok(t, "alice", "secret");
    e2e_ok(t, 3, "len", "{\"name\":\"act\"}");
    stop();
    /* the socket file is systemd's, not chand's: left in place */
    {
        struct stat st;
        assert_int_equal(stat(sock, &st), 0);
    }
    unlink(sock);
}

/* ------------------------------------------------------------------ */
/* Reload                                                             */
/* ------------------------------------------------------------------ */

static void test_reload(void **state)
{
    (void)state;
    testd_conn *old, *c = NULL;
    json_t *a;
    int64_t end;
    bool ok = false;

    write_default_users();
    start(NULL);
    old = login("alice", "secret");
    /* alice's password and rules change; carol appears */
    write_users("alice %s r:*\ncarol %s rwla:*\n", hash2, hash);
    kill(D.pid, SIGHUP);
    end = testd_now_ms() + WAIT_MS;
    while (!ok && testd_now_ms() < end) {
        c = testd_connect(&D);
        assert_non_null(c);
        a = e2e_call(c, 1, "auth",
                     "{\"user\":\"carol\",\"password\":\"secret\"}");
        ok = testd_result(a) != NULL;
        json_decref(a);
        if (!ok) {
            testd_close(c);
            testd_sleep_ms(20);
        }
    }
    assert_true(ok);
    /* carol may drop: what she gets is not_found, not denied */
    e2e_expect_reason(c, 2, "drop", "{\"name\":\"nothing\"}", "not_found");
    testd_close(c);
    c = testd_connect(&D);
    e2e_expect_reason(c, 3, "auth",
                      "{\"user\":\"alice\",\"password\":\"secret\"}",
                      "unauthenticated");
    auth_ok(c, "alice", "other");
    e2e_expect_reason(c, 4, "make", "{\"name\":\"jobs.z\"}", "denied");
    /* a session keeps the rules it authenticated with */
    e2e_ok(old, 5, "make", "{\"name\":\"jobs.z\"}");
    /* a bad file on reload: the old table stays */
    write_users("alice %s r:*\nbroken line without a hash\n", hash);
    kill(D.pid, SIGHUP);
    assert_true(log_has("users file not reloaded"));
    c = testd_connect(&D);
    auth_ok(c, "carol", "secret");
    stop();
}

/* ------------------------------------------------------------------ */
/* Before authentication: deadline, line limit, hostile input         */
/* ------------------------------------------------------------------ */

static void test_preauth_deadline(void **state)
{
    (void)state;
    /* 3000: a password login on a loaded machine always beats it; the
     * idle connection's close is awaited up to WAIT_MS */
    const char *a[] = {"--auth-timeout-ms", "3000", NULL};
    testd_conn *idle, *authed;
    json_t *m;

    write_default_users();
    start(a);
    authed = login("alice", "secret");
    idle = testd_connect(&D);
    assert_non_null(idle);
    /* the idle one is told and closed ... */
    m = testd_recv(idle, WAIT_MS);
    assert_non_null(m);
    assert_string_equal(testd_reason(m), "unauthenticated");
    json_decref(m);
    assert_true(testd_wait_eof(idle, WAIT_MS));
    assert_true(log_has("not authenticated within 3000 ms"));
    /* ... the authenticated one, older, stays */
    e2e_ok(authed, 1, "ping", NULL);
    e2e_ok(authed, 2, "make", "{\"name\":\"jobs.d\"}");
    stop();
}

static void test_preauth_line_limit(void **state)
{
    (void)state;
    testd_conn *c;
    char *big = malloc(6000);
    json_t *a;

    assert_non_null(big);
    write_default_users();
    start(NULL);
    /* before auth: a 5000-byte line closes the connection */
    c = testd_connect(&D);
    snprintf(big, 6000,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\","
             "\"params\":{},\"x\":\"%05000d\"}",
             0);
    assert_int_equal(testd_send(c, big), 0);
    a = testd_recv(c, WAIT_MS);
    assert_non_null(a);
    assert_string_equal(testd_reason(a), "too_large");
    json_decref(a);
    assert_true(testd_wait_eof(c, WAIT_MS));
    /* ... also unterminated */
    c = testd_connect(&D);
    memset(big, 'x', 5000);
    assert_int_equal(testd_write(c, big, 5000), 0);
    assert_true(testd_wait_eof(c, WAIT_MS));
    /* after auth: the usual limit */
    c = login("alice", "secret");
    e2e_ok(c, 2, "make", "{\"name\":\"jobs.big\",\"cap\":1}");
    snprintf(big, 6000, "{\"name\":\"jobs.big\",\"value\":\"%05000d\"}", 0);
    e2e_ok(c, 3, "send", big);
    free(big);
    stop();
}

static void test_hostile_preauth(void **state)
{
    (void)state;
    static const char *const junk[] = {
        "not json at all",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"auth\",\"params\":"
        "{\"user\":1,\"password\":[]}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"auth\",\"params\":"
        "{\"user\":\"alice\",\"password\":\"secret\",\"extra\":1}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"auth\",\"params\":"
        "{\"user\":\"\\u0000alice\",\"password\":\"secret\"}}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\",\"params\":"
        "{\"name\":\"jobs.h\"}}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"make\",\"params\":"
        "{\"name\":\"jobs.h\"}}",
    };
    testd_conn *c, *root;
    char line[4000];
    size_t n = 0;

    write_default_users();
    start(NULL);
    c = testd_connect(&D);
    assert_non_null(c);
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        assert_int_equal(testd_send(c, junk[i]), 0);
        if (i == 6)
            break; /* a notification: no answer */
        json_t *a = testd_recv(c, WAIT_MS);
        assert_non_null(a);
        assert_non_null(json_object_get(a, "error"));
        json_decref(a);
    }
    /* a batch of many makes: each one unauthenticated, nothing made */
    n += (size_t)snprintf(line + n, sizeof line - n, "[");
    for (int i = 0; i < 30; i++)
        n += (size_t)snprintf(line + n, sizeof line - n,
                              "%s{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":"
                              "\"make\",\"params\":{\"name\":\"jobs.%d\"}}",
                              i ? "," : "", 100 + i, i);
    snprintf(line + n, sizeof line - n, "]");
    assert_int_equal(testd_send(c, line), 0);
    json_t *b = testd_recv(c, WAIT_MS);
    assert_int_equal(json_array_size(b), 30);
    for (size_t i = 0; i < 30; i++)
        assert_string_equal(testd_reason(json_array_get(b, i)),
                            "unauthenticated");
    json_decref(b);
    /* NUL bytes and binary */
    assert_int_equal(testd_write(c, "\0\0\xff\xfe\n", 5), 0);
    json_t *a = testd_recv(c, WAIT_MS);
    assert_non_null(json_object_get(a, "error"));
    json_decref(a);
    /* nothing was made; the daemon serves on */
    root = testd_connect_unix(sock);
    json_t *r = e2e_ok(root, 1, "list", NULL);
    assert_int_equal(json_array_size(json_object_get(r, "objects")), 0);
    auth_ok(c, "alice", "secret");
    stop();
}

/* ------------------------------------------------------------------ */
/* Brute force                                                        */
/* ------------------------------------------------------------------ */

static void test_bruteforce_slowdown(void **state)
{
    (void)state;
    /* 1600: the 7th attempt (held back 800 ms, then hashed) keeps 800 ms
     * of the session's deadline for a loaded machine, the 8th (1600 ms)
     * is still refused at once */
    const char *a[] = {"--auth-timeout-ms", "1600", NULL};
    int limited = -1, failed = 0;
    testd_conn *u;

    write_default_users();
    start(a);
    /* failures from 127.0.0.1: with n before it, an attempt waits 0 ms
     * for n <= 2, then 100, 200, 400, 800 ms; the eighth would wait
     * 1600 ms, not before the deadline: refused at once */
    for (int i = 0; i < 10 && limited < 0; i++) {
        testd_conn *c = testd_connect(&D);
        json_t *ans;
        assert_non_null(c);
        ans = e2e_call(c, 1, "auth",
                       "{\"user\":\"alice\",\"password\":\"guess\"}");
        if (!strcmp(testd_reason(ans), "limit"))
            limited = i;
        else {
            assert_string_equal(testd_reason(ans), "unauthenticated");
            failed++;
        }
        json_decref(ans);
        testd_close(c);
    }
    assert_int_equal(failed, 7);
    assert_int_equal(limited, 7);
    assert_int_equal(log_count("authentication failed for user \"alice\""), 7);
    assert_true(log_has("7 recent failures"));
    assert_true(log_has("the next attempt waits 1600 ms"));
    assert_true(log_has("too many recent failures"));
    /* the right password from that address is refused too, for now */
    {
        testd_conn *c = testd_connect(&D);
        e2e_expect_reason(c, 2, "auth",
                          "{\"user\":\"alice\",\"password\":\"secret\"}",
                          "limit");
    }
    /* another peer (the unix socket, keyed by uid) is not slowed down */
    u = testd_connect_unix(sock);
    auth_ok(u, "alice", "secret");
    /* what an operator sees: the failures, the attempts held back (the
     * 4th to the 7th), the two refused, the one success */
    assert_int_equal(sec_stat(u, "auth", "failed"), 7);
    assert_int_equal(sec_stat(u, "auth", "delayed"), 4);
    assert_int_equal(sec_stat(u, "refused", "limit"), 2);
    assert_int_equal(sec_stat(u, "auth", "ok"), 1);
    stop();
}

/* A password hash (bcrypt, cost 14: ~1 s) slow enough that the test can
 * line attempts up behind it; the password is "x". */
#define SLOW_HASH "$2b$14$aaaaaaaaaaaaaaaaaaaaaOboaDxIUIz8jzBzz1R.NEtEKfp8R90Uy"

/* Password hashing is capped: with one slot and a queue of one, an
 * attempt behind a running hash waits, the next is refused at once
 * (reason limit) without its password being checked, and the runtime
 * goes on serving everybody else meanwhile.  Ordered by polling the
 * counts in runtime.stats, never by time. */
static void test_hash_flood(void **state)
{
    (void)state;
    /* The auth deadline runs while a hash is computed: far above any
     * hash time on a loaded machine, so only the counts order the test. */
    const char *a[] = {"--auth-hash-slots",
                       "1",
                       "--auth-hash-queue",
                       "1",
                       "--auth-timeout-ms",
                       "600000",
                       NULL};
    testd_conn *u, *c1, *c2, *c3;
    json_t *ans;

    write_users("slow  %s rw:slow.\n"
                "alice %s rw:jobs. r:*\n"
                "me    -  uid=%u rwla:*\n",
                SLOW_HASH, hash, (unsigned)getuid());
    start(a);
    u = testd_connect_unix(sock);
    assert_non_null(u);
    assert_int_equal(sec_stat(u, "hashing", "slots"), 1);
    assert_int_equal(sec_stat(u, "hashing", "queue"), 1);
    c1 = testd_connect(&D);
    c2 = testd_connect(&D);
    c3 = testd_connect(&D);
    assert_true(c1 && c2 && c3);
    assert_int_equal(testd_send(c1, "{\"jsonrpc\":\"2.0\",\"id\":1,"
                                    "\"method\":\"auth\",\"params\":{"
                                    "\"user\":\"slow\",\"password\":"
                                    "\"x\"}}"),
                     0);
    assert_int_equal(sec_stat_reaches(u, "hashing", "running", 1), 1);
    assert_int_equal(testd_send(c2, "{\"jsonrpc\":\"2.0\",\"id\":2,"
                                    "\"method\":\"auth\",\"params\":{"
                                    "\"user\":\"alice\",\"password\":"
                                    "\"secret\"}}"),
                     0);
    assert_int_equal(sec_stat_reaches(u, "hashing", "waiting", 1), 1);
    e2e_expect_reason_msg(c3, 3, "auth",
                          "{\"user\":\"alice\",\"password\":\"secret\"}",
                          "limit", "busy verifying passwords");
    /* the runtime serves the others while the hash runs */
    e2e_ok(u, 0, "make", "{\"name\":\"q\",\"cap\":1}");
    e2e_ok(u, 0, "send", "{\"name\":\"q\",\"value\":1}");
    e2e_ok(u, 0, "recv", "{\"name\":\"q\"}");
    /* then both attempts in the gate succeed, in turn */
    ans = testd_wait_id(c1, 1, WAIT_MS);
    assert_non_null(testd_result(ans));
    json_decref(ans);
    ans = testd_wait_id(c2, 2, WAIT_MS);
    assert_non_null(testd_result(ans));
    json_decref(ans);
    assert_int_equal(sec_stat(u, "auth", "ok"), 2);
    assert_int_equal(sec_stat(u, "auth", "failed"), 0);
    assert_int_equal(sec_stat(u, "refused", "busy"), 1);
    assert_int_equal(sec_stat(u, "hashing", "running"), 0);
    assert_int_equal(sec_stat(u, "hashing", "waiting"), 0);
    assert_true(log_has("every password hash slot is busy"));
    stop();
}

/* ------------------------------------------------------------------ */
/* Protected mode                                                     */
/* ------------------------------------------------------------------ */

static void test_protected_mode(void **state)
{
    (void)state;
    const char *open_args[] = {"--bind", "0.0.0.0", NULL};
    const char *anon_args[] = {"--bind", "0.0.0.0", "--allow-anonymous", NULL};
    testd_opts o = {.args = open_args, .log = logf};
    testd_conn *c;

    assert_int_equal(testd_start_opts(&D, &o), -1);
    assert_true(log_has("protected mode: refusing to serve 0.0.0.0"));
    /* --allow-anonymous: serves, with a warning */
    o.args = anon_args;
    assert_int_equal(testd_start_opts(&D, &o), 0);
    assert_true(log_has("protected mode off"));
    c = testd_connect(&D);
    e2e_ok(c, 1, "make", "{\"name\":\"open\"}");
    stop();
    /* with users: serves, and asks for authentication */
    write_default_users();
    start(open_args);
    c = testd_connect(&D);
    e2e_expect_reason(c, 2, "make", "{\"name\":\"x\"}", "unauthenticated");
    stop();
}

/* ------------------------------------------------------------------ */
/* TLS                                                                */
/* ------------------------------------------------------------------ */

static char ca[128];

static void make_ca(void)
{
    char cmd[512];

    snprintf(ca, sizeof ca, "%s/ca", tdir);
    snprintf(cmd, sizeof cmd, "tests/common/mkca.sh %s alice", ca);
    assert_int_equal(system(cmd), 0);
}

/* Starts D with TLS (client certificates required when with_ca) and
 * returns the TLS port. */
static int start_tls(bool with_ca, bool with_users)
{
    char cert[160], key[160], cap[160], tpf[160];
    const char *args[24];
    int n = 0, port = 0;
    FILE *f;

    if (!ca[0])
        make_ca();
    snprintf(cert, sizeof cert, "%s/server.pem", ca);
    snprintf(key, sizeof key, "%s/server.key", ca);
    snprintf(cap, sizeof cap, "%s/ca.pem", ca);
    snprintf(tpf, sizeof tpf, "%s/tls-port", tdir);
    unlink(tpf);
    args[n++] = "--log-level";
    args[n++] = "info";
    args[n++] = "--tls-port";
    args[n++] = "auto";
    args[n++] = "--tls-port-file";
    args[n++] = tpf;
    args[n++] = "--tls-cert";
    args[n++] = cert;
    args[n++] = "--tls-key";
    args[n++] = key;
    if (with_ca) {
        args[n++] = "--tls-ca";
        args[n++] = cap;
    }
    args[n] = NULL;
    if (with_users) {
        write_default_users();
        start(args);
    } else {
        testd_opts o = {.args = args, .log = logf};
        assert_int_equal(testd_start_opts(&D, &o), 0);
    }
    f = fopen(tpf, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &port), 1);
    fclose(f);
    assert_true(port > 0);
    return port;
}

typedef struct tconn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
} tconn;

/* Connects with TLS to 127.0.0.1:port, trusting the test CA, with the
 * client certificate name (NULL: none).  Returns 0 when the handshake
 * (and, in TLS 1.3, the server's verdict on the certificate, which comes
 * with the first answer) went through: t is then open. */
static int tls_open(tconn *t, int port, const char *name)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char path[192];

    memset(t, 0, sizeof *t);
    t->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(t->ctx);
    snprintf(path, sizeof path, "%s/ca.pem", ca);
    assert_int_equal(SSL_CTX_load_verify_locations(t->ctx, path, NULL), 1);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    if (name) {
        snprintf(path, sizeof path, "%s/%s.pem", ca, name);
        assert_int_equal(SSL_CTX_use_certificate_chain_file(t->ctx, path), 1);
        snprintf(path, sizeof path, "%s/%s.key", ca, name);
        assert_int_equal(
            SSL_CTX_use_PrivateKey_file(t->ctx, path, SSL_FILETYPE_PEM), 1);
    }
    t->fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(t->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    t->ssl = SSL_new(t->ctx);
    SSL_set_fd(t->ssl, t->fd);
    SSL_set1_host(t->ssl, "127.0.0.1");
    return SSL_connect(t->ssl) == 1 ? 0 : -1;
}

static void tls_close(tconn *t, bool clean)
{
    if (t->ssl && clean)
        SSL_shutdown(t->ssl);
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    if (t->fd >= 0)
        close(t->fd);
    memset(t, 0, sizeof *t);
    t->fd = -1;
}

/* Sends one request line; returns the answer line parsed (new), or NULL
 * when the connection failed or closed. */
static json_t *tls_call(tconn *t, const char *method, const char *params)
{
    char line[1024], buf[4096];
    size_t n = 0;

    snprintf(line, sizeof line,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"%s\",\"params\":%s}"
             "\n",
             method, params ? params : "{}");
    if (SSL_write(t->ssl, line, (int)strlen(line)) <= 0)
        return NULL;
    while (n < sizeof buf - 1) {
        int r = SSL_read(t->ssl, buf + n, (int)(sizeof buf - 1 - n));
        if (r <= 0)
            return NULL;
        n += (size_t)r;
        if (memchr(buf, '\n', n))
            break;
    }
    buf[n] = '\0';
    return json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
}

static void test_tls_plain(void **state)
{
    (void)state;
    tconn t;
    json_t *a;
    int port = start_tls(false, false);

    assert_int_equal(tls_open(&t, port, NULL), 0);
    a = tls_call(&t, "make", "{\"name\":\"tls.q\",\"cap\":1}");
    assert_non_null(testd_result(a));
    json_decref(a);
    a = tls_call(&t, "send", "{\"name\":\"tls.q\",\"value\":\"v\"}");
    assert_non_null(testd_result(a));
    json_decref(a);
    /* a peer that vanishes without close_notify is an EOF, not an error:
     * its session ends as any other */
    tls_close(&t, false);
    assert_true(log_has("session 1 closed"));
    assert_int_equal(log_count("TLS: "), 0);
    /* and the TCP port still serves plain text */
    testd_conn *c = testd_connect(&D);
    assert_int_equal(e2e_ok_int(c, 1, "len", "{\"name\":\"tls.q\"}", "len"), 1);
    /* a client that says nothing is closed at the handshake deadline */
    {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char ch;
        sa.sin_port = htons((uint16_t)port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(poll(&p, 1, WAIT_MS), 1);
        assert_true(read(fd, &ch, 1) <= 0);
        close(fd);
        assert_true(log_has("TLS handshake deadline"));
    }
    stop();
}

static void test_tls_client_cert(void **state)
{
    (void)state;
    tconn t;
    json_t *a;
    int port = start_tls(true, true);

    /* CN=alice: authenticated as alice by the certificate */
    assert_int_equal(tls_open(&t, port, "client"), 0);
    a = tls_call(&t, "make", "{\"name\":\"jobs.tls\"}");
    assert_non_null(testd_result(a));
    json_decref(a);
    a = tls_call(&t, "drop", "{\"name\":\"jobs.tls\"}");
    assert_string_equal(testd_reason(a), "denied");
    json_decref(a);
    tls_close(&t, true);
    assert_true(log_has("certificate names user alice"));
    /* no certificate: refused (TLS 1.3 tells with the first read) */
    if (tls_open(&t, port, NULL) == 0) {
        a = tls_call(&t, "ping", NULL);
        assert_null(a);
    }
    tls_close(&t, false);
    /* a certificate from a CA nobody trusts: refused */
    if (tls_open(&t, port, "rogue") == 0) {
        a = tls_call(&t, "ping", NULL);
        assert_null(a);
    }
    tls_close(&t, false);
    {
        /* both refusals are counted as failed handshakes */
        testd_conn *u = testd_connect_unix(sock);
        assert_non_null(u);
        assert_int_equal(sec_stat_reaches(u, NULL, "tls_handshake_failures", 2),
                         2);
        assert_true(json_is_true(json_object_get(
            json_object_get(e2e_ok(u, 0, "runtime.stats", NULL), "security"),
            "tls")));
    }
    /* a certificate without a CN: connects, names nobody */
    assert_int_equal(tls_open(&t, port, "nocn"), 0);
    a = tls_call(&t, "make", "{\"name\":\"jobs.n\"}");
    assert_string_equal(testd_reason(a), "unauthenticated");
    json_decref(a);
    a = tls_call(&t, "auth", "{\"user\":\"bob\",\"password\":\"secret\"}");
    assert_non_null(testd_result(a));
    json_decref(a);
    tls_close(&t, true);
    stop();
}

/* ------------------------------------------------------------------ */
/* libchand by URL                                                    */
/* ------------------------------------------------------------------ */

static void test_client_urls(void **state)
{
    (void)state;
    chand_conn *c = NULL;
    chand_options *o = chand_options_new();
    chand_error err;
    char url[256], path[192];
    int64_t len = -1, cap = -1;
    int tport = start_tls(true, true);

    assert_non_null(o);
    /* unix: the uid maps to "me" */
    snprintf(url, sizeof url, "unix:%s", sock);
    assert_int_equal(chand_connect_url(url, NULL, 5000, &c, &err), 0);
    assert_int_equal(chand_make(c, "ops.q", 1, NULL), 0);
    chand_close_conn(c);
    /* TCP with a user: hello authenticates, and a reconnect again */
    snprintf(url, sizeof url, "chand://127.0.0.1:%d", D.port);
    assert_int_equal(chand_options_set(o, "user", "alice"), 0);
    assert_int_equal(chand_options_set(o, "password", "secret"), 0);
    assert_int_equal(chand_connect_url(url, o, 5000, &c, &err), 0);
    assert_int_equal(chand_len(c, "ops.q", &len, &cap), 0);
    assert_int_equal(chand_close(c, "ops.q"), CHAND_EDENIED);
    assert_int_equal(chand_reconnect(c, 5000), 0);
    assert_int_equal(chand_make(c, "jobs.u", 0, NULL), 0);
    chand_close_conn(c);
    /* a wrong password: CHAND_EUNAUTH at connect */
    assert_int_equal(chand_options_set(o, "password", "nope"), 0);
    assert_int_equal(chand_connect_url(url, o, 5000, &c, &err), CHAND_EUNAUTH);
    assert_string_equal(err.reason, "unauthenticated");
    /* no user: connects, then unauthenticated */
    assert_int_equal(chand_connect_url(url, NULL, 5000, &c, &err), 0);
    assert_int_equal(chand_len(c, "ops.q", &len, &cap), CHAND_EUNAUTH);
    chand_close_conn(c);
    /* chands: the CA, a client certificate naming alice */
    snprintf(url, sizeof url, "chands://127.0.0.1:%d", tport);
    assert_int_equal(chand_options_set(o, "user", NULL), 0);
    assert_int_equal(chand_options_set(o, "password", NULL), 0);
    assert_int_equal(chand_connect_url(url, o, 5000, &c, &err),
                     CHAND_ECONNECT); /* the system CAs do not know it */
    snprintf(path, sizeof path, "%s/ca.pem", ca);
    assert_int_equal(chand_options_set(o, "tls_ca", path), 0);
    snprintf(path, sizeof path, "%s/client.pem", ca);
    assert_int_equal(chand_options_set(o, "tls_cert", path), 0);
    snprintf(path, sizeof path, "%s/client.key", ca);
    assert_int_equal(chand_options_set(o, "tls_key", path), 0);
    assert_int_equal(chand_connect_url(url, o, 5000, &c, &err), 0);
    assert_int_equal(chand_make(c, "jobs.tls", 0, NULL), 0);
    assert_int_equal(chand_drop(c, "jobs.tls"), CHAND_EDENIED);
    assert_int_equal(chand_reconnect(c, 5000), 0);
    assert_int_equal(chand_len(c, "jobs.tls", &len, &cap), 0);
    chand_close_conn(c);
    /* bad URLs */
    assert_int_equal(chand_connect_url("http://x", NULL, 1000, &c, &err),
                     CHAND_EARG);
    assert_int_equal(chand_connect_url("unix:rel", NULL, 1000, &c, &err),
                     CHAND_EARG);
    chand_options_free(o);
    stop();
}

/* One asynchronous connection by URL: the connect callback's code and the
 * answers of the requests queued before it was up. */
typedef struct aurl {
    struct event_base *base;
    chand_async *a;
    int up;        /* the connect callback's rc, 1 before it ran */
    char why[256]; /* its message */
    int rc[4];     /* the requests' rc, 1 before they were answered */
} aurl;

static void aurl_up(chand_async *a, int rc, const chand_error *err, void *arg)
{
    aurl *u = arg;
    (void)a;
    u->up = rc;
    snprintf(u->why, sizeof u->why, "%s", err ? err->message : "");
}

static void aurl_reply(chand_async *a, int rc, json_t *res,
                       const chand_error *err, void *arg)
{
    (void)a;
    (void)res;
    (void)err;
    *(int *)arg = rc;
}

/* Connects to url with o and queues the nreq requests of methods (each on
 * params "name" names[i]) at once, before the connection is up; runs the
 * loop until every callback ran.  Returns the connect code. */
static int aurl_run(aurl *u, const char *url, const chand_options *o, int nreq,
                    const char *const *methods, const char *const *names)
{
    chand_error err;
    struct timeval tick = {0, 100000};
    int64_t deadline = testd_now_ms() + WAIT_MS;
    int rc;

    memset(u, 0, sizeof *u);
    u->up = 1;
    u->base = event_base_new();
    assert_non_null(u->base);
    rc =
        chand_async_connect_url(u->base, url, o, 5000, aurl_up, u, &u->a, &err);
    if (rc < 0) {
        event_base_free(u->base);
        snprintf(u->why, sizeof u->why, "%s", err.message);
        return rc;
    }
    for (int i = 0; i < nreq; i++) {
        u->rc[i] = 1;
        assert_int_equal(chand_async_call(u->a, methods[i],
                                          json_pack("{s:s}", "name", names[i]),
                                          5000, aurl_reply, &u->rc[i]),
                         0);
    }
    for (;;) {
        int done = u->up != 1;
        for (int i = 0; i < nreq; i++)
            done += u->rc[i] != 1;
        if (done == 1 + nreq)
            break;
        assert_true(testd_now_ms() < deadline);
        event_base_loopexit(u->base, &tick);
        assert_true(event_base_loop(u->base, EVLOOP_ONCE) >= 0);
    }
    chand_async_free(u->a);
    event_base_free(u->base);
    return u->up;
}

/* chand_async_connect_url: unix:, chand:// with a user (the requests
 * queued before hello's answer run as that user), a wrong password,
 * chands:// with and without the CA, and a bad URL. */
static void test_async_urls(void **state)
{
    (void)state;
    chand_options *o = chand_options_new();
    char url[256], path[192];
    const char *mk[] = {"make"}, *lc[] = {"len", "close"};
    const char *q[] = {"ops.aq"}, *qq[] = {"ops.aq", "ops.aq"};
    aurl u;
    int tport = start_tls(true, true);

    assert_non_null(o);
    snprintf(url, sizeof url, "unix:%s", sock);
    assert_int_equal(aurl_run(&u, url, NULL, 1, mk, q), 0);
    assert_int_equal(u.rc[0], 0);

    snprintf(url, sizeof url, "chand://127.0.0.1:%d", D.port);
    assert_int_equal(chand_options_set(o, "user", "alice"), 0);
    assert_int_equal(chand_options_set(o, "password", "secret"), 0);
    assert_int_equal(aurl_run(&u, url, o, 2, lc, qq), 0);
    assert_int_equal(u.rc[0], 0);             /* r:* */
    assert_int_equal(u.rc[1], CHAND_EDENIED); /* no w on ops. */

    assert_int_equal(chand_options_set(o, "password", "nope"), 0);
    assert_int_equal(aurl_run(&u, url, o, 1, lc, qq), CHAND_EUNAUTH);
    assert_int_equal(u.rc[0], CHAND_ECONN);
    assert_non_null(strstr(u.why, "invalid user or password"));

    snprintf(url, sizeof url, "chands://127.0.0.1:%d", tport);
    assert_int_equal(chand_options_set(o, "user", NULL), 0);
    assert_int_equal(chand_options_set(o, "password", NULL), 0);
    assert_int_equal(aurl_run(&u, url, o, 0, NULL, NULL), CHAND_ECONNECT);
    assert_non_null(strstr(u.why, "certificate"));
    snprintf(path, sizeof path, "%s/ca.pem", ca);
    assert_int_equal(chand_options_set(o, "tls_ca", path), 0);
    snprintf(path, sizeof path, "%s/client.pem", ca);
    assert_int_equal(chand_options_set(o, "tls_cert", path), 0);
    snprintf(path, sizeof path, "%s/client.key", ca);
    assert_int_equal(chand_options_set(o, "tls_key", path), 0);
    assert_int_equal(aurl_run(&u, url, o, 2, lc, qq), 0); /* CN=alice */
    assert_int_equal(u.rc[0], 0);
    assert_int_equal(u.rc[1], CHAND_EDENIED);

    assert_int_equal(aurl_run(&u, "http://x", NULL, 0, NULL, NULL), CHAND_EARG);
    assert_int_equal(aurl_run(&u, "unix:rel", NULL, 0, NULL, NULL), CHAND_EARG);
    chand_options_free(o);
    stop();
}

/* Many small TLS records in one burst: the daemon's OpenSSL reads ahead
 * (one read(2) takes them all) while the bufferevent hands over one
 * record at a time; every request behind the first must still be served
 * (tls_read_pending), and so must one sent right behind the handshake. */
static void test_tls_record_burst(void **state)
{
    (void)state;
    tconn t;
    char buf[65536];
    size_t n = 0;
    int lines = 0, port = start_tls(false, false);
    const int count = 200;

    for (int round = 0; round < 3; round++) {
        struct timeval rto = {10, 0}; /* a stall fails, not hangs */
        assert_int_equal(tls_open(&t, port, NULL), 0);
        assert_int_equal(
            setsockopt(t.fd, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto), 0);
        lines = 0;
        n = 0;
        for (int i = 0; i < count; i++) {
            char line[128];
            int len = snprintf(line, sizeof line,
                               "{\"jsonrpc\":\"2.0\",\"id\":%d,"
                               "\"method\":\"ping\"}\n",
                               i);
            /* one SSL_write, one record, each */
            assert_int_equal(SSL_write(t.ssl, line, len), len);
        }
        while (lines < count) {
            int r = SSL_read(t.ssl, buf + n, (int)(sizeof buf - n));
            assert_true(r > 0);
            for (int k = 0; k < r; k++)
                lines += buf[n + (size_t)k] == '\n';
            n = (n + (size_t)r) % (sizeof buf / 2);
        }
        assert_int_equal(lines, count);
        tls_close(&t, true);
    }
    stop();
}

/* Large answers over TLS, many at once: the daemon writes a turn's
 * answers straight to the socket (tls_write_now) until the socket is
 * full, then hands the rest to the bufferevent, which must resume exactly
 * where the direct write stopped.  Eight 600 KB values received in one
 * pipelined burst arrive whole and in order. */
#define BIG_N 8
#define BIG_LEN (600 * 1024)

typedef struct big_rx {
    int done, bad;
} big_rx;

static void big_reply(chand_async *a, int rc, json_t *res,
                      const chand_error *err, void *arg)
{
    big_rx *rx = arg;
    const char *v = json_string_value(json_object_get(res, "value"));
    (void)a;
    (void)err;
    if (rc != 0 || !v || strlen(v) != BIG_LEN || v[0] != 'a' + rx->done ||
        v[BIG_LEN - 1] != 'a' + rx->done)
        rx->bad++;
    rx->done++;
}

static void test_tls_large_answers(void **state)
{
    (void)state;
    chand_conn *c = NULL;
    chand_options *o = chand_options_new();
    chand_error err;
    struct event_base *base = event_base_new();
    struct timeval tick = {0, 100000};
    chand_async *a = NULL;
    big_rx rx = {0};
    char url[128], path[192], *big = malloc(BIG_LEN + 1);
    int tport = start_tls(false, false);
    int64_t end;

    assert_non_null(o);
    assert_non_null(base);
    assert_non_null(big);
    snprintf(path, sizeof path, "%s/ca.pem", ca);
    assert_int_equal(chand_options_set(o, "tls_ca", path), 0);
    snprintf(url, sizeof url, "chands://127.0.0.1:%d", tport);
    assert_int_equal(chand_connect_url(url, o, 5000, &c, &err), 0);
    assert_int_equal(chand_make(c, "big", BIG_N, NULL), 0);
    for (int i = 0; i < BIG_N; i++) {
        memset(big, 'a' + i, BIG_LEN);
        big[BIG_LEN] = '\0';
        assert_int_equal(chand_send_str(c, "big", big, 5000), 0);
    }
    assert_int_equal(
        chand_async_connect_url(base, url, o, 5000, NULL, NULL, &a, &err), 0);
    for (int i = 0; i < BIG_N; i++)
        assert_int_equal(chand_async_call(a, "recv",
                                          json_pack("{s:s}", "name", "big"),
                                          5000, big_reply, &rx),
                         0);
    end = testd_now_ms() + WAIT_MS;
    while (rx.done < BIG_N && testd_now_ms() < end) {
        event_base_loopexit(base, &tick);
        assert_true(event_base_loop(base, EVLOOP_ONCE) >= 0);
    }
    assert_int_equal(rx.done, BIG_N);
    assert_int_equal(rx.bad, 0);
    /* and the connection still works both ways */
    assert_int_equal(chand_send_str(c, "big", "small", 5000), 0);
    chand_async_free(a);
    event_base_free(base);
    chand_close_conn(c);
    chand_options_free(o);
    free(big);
    stop();
}

/* tls_cert and tls_key reload on SIGHUP: a certificate from a new CA
 * replaces the old one; a broken one is refused and the old stays. */
static void test_tls_reload(void **state)
{
    (void)state;
    char cmd[1024], ca2[sizeof ca], saved[sizeof ca];
    tconn t;
    json_t *a;
    int port = start_tls(false, false), ok = 0;
    int64_t end;

    snprintf(ca2, sizeof ca2, "%s/ca2", tdir);
    snprintf(cmd, sizeof cmd,
             "tests/common/mkca.sh %s && cp %s/server.pem %s/server.pem && "
             "cp %s/server.key %s/server.key",
             ca2, ca2, ca, ca2, ca);
    assert_int_equal(system(cmd), 0);
    kill(D.pid, SIGHUP);
    assert_true(log_has("TLS certificates reloaded"));
    /* the old CA no longer verifies the server; the new one does */
    end = testd_now_ms() + WAIT_MS;
    while (!ok && testd_now_ms() < end) {
        memcpy(saved, ca, sizeof ca);
        memcpy(ca, ca2, sizeof ca); /* tls_open trusts ca/ca.pem */
        ok = tls_open(&t, port, NULL) == 0;
        memcpy(ca, saved, sizeof ca);
        if (ok) {
            a = tls_call(&t, "ping", NULL);
            assert_non_null(testd_result(a));
            json_decref(a);
        }
        tls_close(&t, true);
    }
    assert_true(ok);
    assert_int_equal(tls_open(&t, port, NULL), -1);
    tls_close(&t, false);
    /* a broken key: refused, the certificate in force stays */
    snprintf(cmd, sizeof cmd, "echo broken > %s/server.key", ca);
    assert_int_equal(system(cmd), 0);
    kill(D.pid, SIGHUP);
    assert_true(log_has("TLS certificates not reloaded"));
    memcpy(saved, ca, sizeof ca);
    memcpy(ca, ca2, sizeof ca);
    assert_int_equal(tls_open(&t, port, NULL), 0);
    tls_close(&t, true);
    memcpy(ca, saved, sizeof ca);
    stop();
    /* the next test makes a fresh CA */
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", ca, ca2);
    assert_int_equal(system(cmd), 0);
    ca[0] = '\0';
}

/* A users file with an error refuses to start, naming file and line. */
static void test_bad_users_file(void **state)
{
    (void)state;
    const char *args[] = {"--users-file", users, NULL};
    testd_opts o = {.args = args, .log = logf};

    write_users("alice %s rw:jobs.\nbob %s q:bad\n", hash, hash);
    assert_int_equal(testd_start_opts(&D, &o), -1);
    assert_true(log_has("users:2:"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_no_users_open, teardown),
        cmocka_unit_test_teardown(test_unauthenticated, teardown),
        cmocka_unit_test_teardown(test_pipelined_after_auth, teardown),
        cmocka_unit_test_teardown(test_denied_changes_nothing, teardown),
        cmocka_unit_test_teardown(test_prefix_boundaries, teardown),
        cmocka_unit_test_teardown(test_list_dump_filtered, teardown),
        cmocka_unit_test_teardown(test_unix_socket, teardown),
        cmocka_unit_test_teardown(test_activation_two_sockets, teardown),
        cmocka_unit_test_teardown(test_reload, teardown),
        cmocka_unit_test_teardown(test_preauth_deadline, teardown),
        cmocka_unit_test_teardown(test_preauth_line_limit, teardown),
        cmocka_unit_test_teardown(test_hostile_preauth, teardown),
        cmocka_unit_test_teardown(test_bruteforce_slowdown, teardown),
        cmocka_unit_test_teardown(test_hash_flood, teardown),
        cmocka_unit_test_teardown(test_protected_mode, teardown),
        cmocka_unit_test_teardown(test_tls_plain, teardown),
        cmocka_unit_test_teardown(test_tls_client_cert, teardown),
        cmocka_unit_test_teardown(test_client_urls, teardown),
        cmocka_unit_test_teardown(test_async_urls, teardown),
        cmocka_unit_test_teardown(test_tls_record_burst, teardown),
        cmocka_unit_test_teardown(test_tls_large_answers, teardown),
        cmocka_unit_test_teardown(test_tls_reload, teardown),
        cmocka_unit_test_teardown(test_bad_users_file, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
