/*
 * test_users.c - unit tests of the users file: a valid file (comments,
 * blank lines, CRLF, tabs, `-` for no password, uid/gid mappings, rules),
 * every parse error with its file and line, hostile lines (very long, NUL
 * bytes, control characters, missing fields), the peer uid/gid mapping,
 * yescrypt hashing and verification (right, wrong, unknown user, no
 * password), reading a password line, and the slot: a reload swaps the
 * table, a bad file keeps the old one, and a held table outlives the swap
 * (also while another thread takes and drops references).  It also
 * replays fuzz_users's seeds (tests/fuzz/corpus/users) through the
 * harness.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/testpath.h"
#include "users.h"
#define LLVMFuzzerTestOneInput fuzz_users_one
#include "../fuzz/fuzz_users.c"
#undef LLVMFuzzerTestOneInput

static char tmpdir[256];
static char hash_pw[USERS_HASH_MAX]; /* yescrypt of "s3cret" */

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_users.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    return users_hash_password("s3cret", hash_pw, sizeof hash_pw);
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes len bytes of text to tmpdir/users; returns the path (static). */
static const char *write_users(const char *text, size_t len)
{
    static char path[300];
    FILE *f;
    snprintf(path, sizeof path, "%s/users", tmpdir);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* Parses text; expects an error whose message is "users:LINE: ..." and
 * contains words. */
static void expect_error(const char *text, size_t len, unsigned line,
                         const char *words)
{
    users_table *t = (users_table *)1;
    char err[512] = "", want[32];
    int rc = users_parse("users", text, len, &t, err, sizeof err);

    if (rc == 0)
        fail_msg("parsed without error: %.*s", (int)(len > 80 ? 80 : len),
                 text);
    assert_int_equal(rc, -EINVAL);
    assert_null(t);
    snprintf(want, sizeof want, "users:%u: ", line);
    if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, words))
        fail_msg("message \"%s\": want \"%s...%s\"", err, want, words);
}

#define ERR(text, line, words) expect_error(text, strlen(text), line, words)

/* ---- parsing ---- */

static void test_parse_valid(void **state)
{
    char text[1024], err[512];
    users_table *t;
    const users_user *u;
    const acl_rules *r;
    (void)state;

    snprintf(text, sizeof text,
             "# chand users\n"
             "\n"
             "   # indented comment\n"
             "alice %s rw:jobs. l:locks. r:*\r\n"
             "\tdeploy\t-\tuid=1001\tl:deploy.\n"
             "ops %s gid=27 rwla:*\n"
             "nobody -\n"
             "last.one@x - w:a", /* no final newline */
             hash_pw, hash_pw);
    assert_int_equal(
        users_parse("users", text, strlen(text), &t, err, sizeof err), 0);
    assert_int_equal(users_count(t), 5);
    assert_int_equal(users_table_gen(t), 0);

    u = users_find(t, "alice");
    assert_non_null(u);
    assert_string_equal(users_user_name(u), "alice");
    assert_true(users_user_has_password(u));
    assert_int_equal(users_user_line(u), 4);
    r = users_user_rules(u);
    assert_int_equal(r->n, 3);
    assert_int_equal(r->v[0].perms, ACL_R | ACL_W);
    assert_string_equal(r->v[0].prefix, "jobs.");
    assert_int_equal(r->v[1].perms, ACL_L);
    assert_int_equal(r->v[2].plen, 0);
    assert_true(acl_allows(r, ACL_W, "jobs.x", 6));
    assert_false(acl_allows(r, ACL_W, "other", 5));

    u = users_find(t, "deploy");
    assert_non_null(u);
    assert_false(users_user_has_password(u));
    assert_int_equal(users_user_rules(u)->n, 1);
    assert_int_equal(users_user_line(u), 5);

    u = users_find(t, "nobody");
    assert_non_null(u);
    assert_int_equal(users_user_rules(u)->n, 0);
    assert_non_null(users_find(t, "last.one@x"));
    assert_null(users_find(t, "bob"));
    assert_null(users_find(t, "alic"));
    assert_null(users_find(t, ""));
    assert_null(users_find(NULL, "alice"));
    users_unref(t);

    /* An empty file (or one of comments) configures no users. */
    assert_int_equal(users_parse("users", "# none\n", 7, &t, err, sizeof err),
                     0);
    assert_int_equal(users_count(t), 0);
    assert_null(users_find(t, "alice"));
    users_unref(t);
}

static void test_parse_errors(void **state)
{
    char text[1024];
    (void)state;

    ERR("# ok\nal!ce - r:*\n", 2, "invalid user name \"al!ce\"");
    ERR("alice\n", 1, "user \"alice\" has no password hash");
    ERR("\n\n  alice   \n", 3, "has no password hash");
    ERR("alice plain r:*\n", 1, "is not a crypt(5) hash");
    ERR("alice $1$abc$abcdefghijklmnopqrstuv r:*\n", 1, "weak method");
    ERR("alice $y$ r:*\n", 1, "password hash of \"alice\" is incomplete");
    ERR("alice $y$j9T$nYgLuJ5YjKEIRpEyPSGaC/ r:*\n", 1, "is incomplete");
    ERR("alice $y$j9T$nYgLuJ5YjKEIRpEyPSGaC/$abc r:*\n", 1, "is incomplete");
    ERR("alice $2b$10$ r:*\n", 1, "password hash of \"alice\" is");
    ERR("alice $y$j9T$nYgLuJ5YjKEIRpEyPSGaC/$Vs7JL/3.GYZ7ZmpPeJ26QC56CburqpJLg"
        ".dTdfeJLe! r:*\n",
        1, "is not valid");
    ERR("alice - rx:jobs\n", 1, "unknown permission 'x'");
    ERR("alice - jobs\n", 1, "rule \"jobs\" is not PERMS:PREFIX");
    ERR("alice - r:\n", 1, "empty prefix");
    ERR("alice - uid=abc\n", 1, "invalid uid \"uid=abc\"");
    ERR("alice - uid=-1\n", 1, "invalid uid");
    ERR("alice - uid=4294967295\n", 1, "invalid uid");
    ERR("alice - uid=99999999999\n", 1, "invalid uid");
    ERR("alice - gid=1x\n", 1, "invalid gid");
    ERR("alice - uid=1 uid=2\n", 1, "two uid fields");
    ERR("alice - gid=1 gid=2\n", 1, "two gid fields");
    ERR("a - r:*\nb - r:*\n\na - w:*\n", 4,
        "user \"a\" is already defined on line 1");
    ERR("a - uid=7\nb - uid=7\n", 2, "uid 7 already maps to \"a\" (line 1)");
    ERR("a - gid=7\nb - uid=7 gid=7\n", 2, "gid 7 already maps to \"a\"");
    snprintf(text, sizeof text, "a %.20s r:*\n", hash_pw);
    ERR(text, 1, "password hash of \"a\"");
    /* The user name limit. */
    memset(text, 'n', 65);
    strcpy(text + 65, " - r:*\n");
    ERR(text, 1, "invalid user name");
}

static void test_hostile_lines(void **state)
{
    char *big;
    char text[64];
    users_table *t;
    char err[512];
    (void)state;

    /* A line of 100000 bytes: refused, naming the line. */
    big = malloc(100010);
    assert_non_null(big);
    memcpy(big, "ok - r:*\nx - ", 13);
    memset(big + 13, 'r', 100000 - 13);
    memcpy(big + 100000, ":*\n", 3);
    expect_error(big, 100003, 2, "line longer than 4096 bytes");
    free(big);

    /* NUL bytes, in a user line and in a comment. */
    expect_error("alice - r:*\nbob -\0 r:*\n", 23, 2, "NUL byte");
    expect_error("# \0\n", 4, 1, "NUL byte");
    /* Control characters other than tab and the CR of CRLF. */
    ERR("alice - r:*\x1b[2J\n", 1, "control character");
    ERR("alice -\vr:*\n", 1, "control character");
    ERR("alice\r- r:*\n", 1, "control character");
    /* Missing fields and stray separators. */
    ERR("   \t  x\n", 1, "has no password hash");
    ERR(":\n", 1, "invalid user name");
    ERR("=\n", 1, "invalid user name");
    /* High bytes in a name or a rule are not names. */
    ERR("\xc3\xa9 - r:*\n", 1, "invalid user name \"??\"");

    /* Exactly USERS_LINE_MAX bytes is fine. */
    big = malloc(USERS_LINE_MAX + 2);
    assert_non_null(big);
    memcpy(big, "x - r:", 6);
    memset(big + 6, 'p', USERS_LINE_MAX - 6);
    /* prefixes are at most 255 bytes: split into many rules */
    for (size_t i = 200; i < USERS_LINE_MAX - 10; i += 200)
        memcpy(big + i, " r:", 3);
    big[USERS_LINE_MAX] = '\n';
    assert_int_equal(
        users_parse("users", big, USERS_LINE_MAX + 1, &t, err, sizeof err), 0);
    assert_int_equal(users_count(t), 1);
    users_unref(t);
    free(big);

    /* Random bytes never crash the parser and never leak. */
    srand(17);
    for (int i = 0; i < 2000; i++) {
        size_t n = (size_t)(rand() % (int)sizeof text);
        for (size_t j = 0; j < n; j++)
            text[j] = (char)(rand() % 4 == 0 ? ' ' : rand() % 256);
        if (users_parse("users", text, n, &t, err, sizeof err) == 0)
            users_unref(t);
    }
}

static void test_load_file(void **state)
{
    users_table *t;
    char err[512], path[300];
    const char *p;
    (void)state;

    p = write_users("alice - r:*\n", 12);
    assert_int_equal(users_load(p, &t, err, sizeof err), 0);
    assert_int_equal(users_count(t), 1);
    users_unref(t);

    p = write_users("alice - r:*\nbad\n", 16);
    assert_int_equal(users_load(p, &t, err, sizeof err), -EINVAL);
    assert_null(t);
    snprintf(path, sizeof path, "%s:2: user \"bad\" has no password hash", p);
    assert_non_null(strstr(err, path));

    snprintf(path, sizeof path, "%s/none", tmpdir);
    assert_int_equal(users_load(path, &t, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "none: No such file"));
}

static void test_file_mode(void **state)
{
    char warn[512];
    const char *p = write_users("a - r:*\n", 8);
    (void)state;

    assert_int_equal(chmod(p, 0600), 0);
    assert_int_equal(users_file_private(p, warn, sizeof warn), 0);
    assert_int_equal(chmod(p, 0640), 0);
    assert_int_equal(users_file_private(p, warn, sizeof warn), 0);
    assert_int_equal(chmod(p, 0644), 0);
    assert_int_equal(users_file_private(p, warn, sizeof warn), 1);
    assert_non_null(strstr(warn, "readable by everyone (mode 0644)"));
    assert_int_equal(chmod(p, 0660), 0);
    assert_int_equal(users_file_private(p, warn, sizeof warn), 1);
    assert_non_null(strstr(warn, "writable by others"));
    assert_int_equal(users_file_private("/nonexistent/u", warn, sizeof warn),
                     -ENOENT);
}

/* ---- peers ---- */

static void test_peer_mapping(void **state)
{
    const char *text = "a - uid=1000 r:a\n"
                       "b - gid=100 r:b\n"
                       "c - uid=0 gid=1000 r:c\n"
                       "d - r:d\n";
    users_table *t;
    char err[256];
    (void)state;

    assert_int_equal(
        users_parse("users", text, strlen(text), &t, err, sizeof err), 0);
    assert_string_equal(users_user_name(users_find_peer(t, 1000, 100)), "a");
    /* A uid mapping wins over a gid mapping. */
    assert_string_equal(users_user_name(users_find_peer(t, 1000, 1000)), "a");
    assert_string_equal(users_user_name(users_find_peer(t, 1001, 100)), "b");
    assert_string_equal(users_user_name(users_find_peer(t, 0, 0)), "c");
    assert_string_equal(users_user_name(users_find_peer(t, 5, 1000)), "c");
    assert_null(users_find_peer(t, 5, 5));
    assert_null(users_find_peer(NULL, 1000, 100));
    users_unref(t);
}

/* ---- passwords ---- */

static void test_hash_password(void **state)
{
    char h1[USERS_HASH_MAX], h2[USERS_HASH_MAX], small[20];
    char big[USERS_PASSWORD_MAX + 2];
    (void)state;

    assert_int_equal(strncmp(hash_pw, "$y$", 3), 0);
    assert_int_equal(users_hash_password("pw", h1, sizeof h1), 0);
    assert_int_equal(users_hash_password("pw", h2, sizeof h2), 0);
    /* A fresh salt each time. */
    assert_string_not_equal(h1, h2);
    assert_int_equal(strncmp(h1, "$y$", 3), 0);
    assert_int_equal(users_hash_password("", h1, sizeof h1), -EINVAL);
    assert_int_equal(users_hash_password(NULL, h1, sizeof h1), -EINVAL);
    assert_int_equal(users_hash_password("pw", small, sizeof small), -ENOSPC);
    memset(big, 'p', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(users_hash_password(big, h1, sizeof h1), -EINVAL);
}

static void test_verify(void **state)
{
    char text[1024], err[256];
    char big[USERS_PASSWORD_MAX + 2];
    users_table *t;
    const users_user *u;
    (void)state;

    snprintf(text, sizeof text, "alice %s r:*\nbob - uid=5 r:*\n", hash_pw);
    assert_int_equal(
        users_parse("users", text, strlen(text), &t, err, sizeof err), 0);
    assert_int_equal(users_verify(users_find(t, "alice"), "s3cret"), 0);
    assert_int_equal(users_verify(users_find(t, "alice"), "s3creT"), -EACCES);
    assert_int_equal(users_verify(users_find(t, "alice"), "s3cret "), -EACCES);
    assert_int_equal(users_verify(users_find(t, "alice"), ""), -EACCES);
    assert_int_equal(users_verify(users_find(t, "bob"), ""), -EACCES);
    assert_int_equal(users_verify(users_find(t, "bob"), "-"), -EACCES);
    assert_int_equal(users_verify(NULL, "s3cret"), -EACCES);

    assert_int_equal(users_authenticate(t, "alice", "s3cret", &u), 0);
    assert_ptr_equal(u, users_find(t, "alice"));
    assert_int_equal(users_authenticate(t, "alice", "nope", &u), -EACCES);
    assert_null(u);
    assert_int_equal(users_authenticate(t, "carol", "s3cret", &u), -EACCES);
    assert_null(u);
    assert_int_equal(users_authenticate(t, "bob", "", &u), -EACCES);
    assert_int_equal(users_authenticate(t, "alice", NULL, &u), -EACCES);
    memset(big, 'p', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(users_authenticate(t, "alice", big, &u), -EACCES);
    users_unref(t);
}

static void test_read_password(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        int rc;
        const char *out;
    } cases[] = {
        {"secret\n", 7, 0, "secret"},
        {"secret\r\nmore\n", 14, 0, "secret"},
        {"no newline", 10, 0, "no newline"},
        {" spaces kept \n", 14, 0, " spaces kept "},
        {"\n", 1, -EINVAL, NULL},
        {"", 0, -EINVAL, NULL},
        {"a\0b\n", 4, -EILSEQ, NULL},
        {"0123456789abcdef\n", 17, -E2BIG, NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[16];
        char in[32];
        FILE *f;
        int rc;
        memcpy(in, cases[i].in, cases[i].len);
        f = fmemopen(in, cases[i].len ? cases[i].len : 1, "r");
        assert_non_null(f);
        if (cases[i].len == 0)
            (void)getc(f), (void)getc(f); /* at EOF */
        rc = users_read_password(f, buf, sizeof buf);
        fclose(f);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d, want %d", i, rc, cases[i].rc);
        if (cases[i].out)
            assert_string_equal(buf, cases[i].out);
    }
}

/* ---- the slot ---- */

static void test_slot_reload(void **state)
{
    users_slot *s = users_slot_new();
    users_table *t1, *t2, *t3;
    char err[512];
    const char *p;
    (void)state;

    assert_non_null(s);
    assert_null(users_slot_get(s));
    assert_int_equal(users_slot_gen(s), 0);

    p = write_users("alice - r:*\n", 12);
    assert_int_equal(users_slot_load(s, p, err, sizeof err), 0);
    assert_int_equal(users_slot_gen(s), 1);
    t1 = users_slot_get(s);
    assert_non_null(t1);
    assert_int_equal(users_table_gen(t1), 1);

    /* A bad file: an error naming the line, the old table kept. */
    p = write_users("alice - r:*\nbob - q:*\n", 22);
    assert_int_equal(users_slot_load(s, p, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "users:2: rule \"q:*\""));
    assert_int_equal(users_slot_gen(s), 1);
    t2 = users_slot_get(s);
    assert_ptr_equal(t1, t2);
    users_unref(t2);

    /* A missing file too. */
    assert_int_equal(users_slot_load(s, "/nonexistent/users", err, sizeof err),
                     -ENOENT);
    t2 = users_slot_get(s);
    assert_ptr_equal(t1, t2);
    users_unref(t2);

    /* A good file replaces it; the session holding t1 still reads it. */
    p = write_users("bob - w:*\n", 10);
    assert_int_equal(users_slot_load(s, p, err, sizeof err), 0);
    assert_int_equal(users_slot_gen(s), 2);
    t3 = users_slot_get(s);
    assert_ptr_not_equal(t3, t1);
    assert_int_equal(users_table_gen(t3), 2);
    assert_non_null(users_find(t3, "bob"));
    assert_null(users_find(t3, "alice"));
    assert_non_null(users_find(t1, "alice"));
    assert_string_equal(users_user_name(users_find(t1, "alice")), "alice");
    users_unref(t1); /* the last reference: freed (ASan checks) */
    users_slot_free(s);
    /* t3 outlives the slot. */
    assert_non_null(users_find(t3, "bob"));
    users_unref(t3);
}

struct reader {
    users_slot *s;
    atomic_bool stop;
    long reads;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    while (!atomic_load(&r->stop)) {
        users_table *t = users_slot_get(r->s);
        const users_user *u = users_find(t, "u");
        if (!u || users_user_rules(u)->n != 1)
            abort();
        users_unref(t);
        r->reads++;
    }
    return NULL;
}

static void test_slot_concurrent(void **state)
{
    struct reader rd = {0};
    pthread_t th;
    char err[512];
    const char *p;
    (void)state;

    rd.s = users_slot_new();
    p = write_users("u - r:a\n", 8);
    assert_int_equal(users_slot_load(rd.s, p, err, sizeof err), 0);
    atomic_init(&rd.stop, false);
    assert_int_equal(pthread_create(&th, NULL, reader_main, &rd), 0);
    for (int i = 0; i < 200; i++) {
        char text[64];
        int n = snprintf(text, sizeof text, "u - w:n%d\n", i);
        p = write_users(text, (size_t)n);
        assert_int_equal(users_slot_load(rd.s, p, err, sizeof err), 0);
    }
    atomic_store(&rd.stop, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(users_slot_gen(rd.s), 201);
    users_slot_free(rd.s);
}

static void test_fuzz_seeds(void **state)
{
    const char *dir = testpath("tests/fuzz/corpus/users");
    char path[1024];
    struct dirent *e;
    DIR *d;
    int n = 0;
    (void)state;

    assert_non_null(dir);
    d = opendir(dir);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        static char buf[65536];
        size_t len;
        FILE *f;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        f = fopen(path, "rb");
        assert_non_null(f);
        len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        fuzz_users_one((const uint8_t *)buf, len);
        n++;
    }
    closedir(d);
    assert_true(n >= 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_hostile_lines),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_file_mode),
        cmocka_unit_test(test_peer_mapping),
        cmocka_unit_test(test_hash_password),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_read_password),
        cmocka_unit_test(test_slot_reload),
        cmocka_unit_test(test_slot_concurrent),
        cmocka_unit_test(test_fuzz_seeds),
    };
    return cmocka_run_group_tests_name("users", tests, setup, teardown);
}
