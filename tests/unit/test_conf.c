/*
 * test_conf.c - unit tests of the settings: conf_set (every key, bad
 * values), the config file syntax (comments, quotes, CRLF, errors naming
 * file and line), the shipped configs/chand.conf (valid, complete, listens
 * on 127.0.0.1:2426), and the order defaults < file < flags at start-up
 * and on reload (cfg_from_args, cfg_reload).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfgfile.h"
#include "conf.h"
#include "../common/testpath.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_conf.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes text to tmpdir/name; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[400];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* Loads text into a fresh defaults conf; returns cfg_load_text's result. */
static int load(conf *c, const char *text, char *err, size_t errlen)
{
    conf_defaults(c);
    err[0] = '\0';
    return cfg_load_text(c, "t.conf", text, err, errlen);
}

/* Asserts that text fails with exactly msg. */
static void expect_error(const char *text, const char *msg)
{
    char err[600];
    conf c;

    assert_int_equal(load(&c, text, err, sizeof err), -1);
    if (strcmp(err, msg) != 0)
        fail_msg("for %s\n  got  \"%s\"\n  want \"%s\"", text, err, msg);
}

static void test_defaults(void **state)
{
    conf c;
    (void)state;

    conf_defaults(&c);
    assert_string_equal(c.bind, "127.0.0.1");
    assert_int_equal(c.port, CONF_DEFAULT_PORT);
    assert_int_equal(c.port, 2426);
    assert_int_equal(c.gomaxprocs, 0);
    assert_int_equal(c.log_level, LOG_LVL_INFO);
    assert_int_equal(c.metrics_port, 0); /* off unless asked for */
    assert_string_equal(c.metrics_bind, "127.0.0.1");
    assert_int_equal(c.shutdown_grace_ms, 3000);
    assert_string_equal(c.port_file, "");
    assert_string_equal(c.metrics_port_file, "");
}

/* A value of max_value bytes fits in a line by default; a max_line that
 * leaves no room for the envelope is warned about. */
static void test_line_fits_value(void **state)
{
    char buf[400];
    conf c;
    (void)state;

    conf_defaults(&c);
    assert_int_equal(c.max_value, 1024 * 1024);
    assert_int_equal(c.max_line, 1024 * 1024 + 64 * 1024);
    assert_null(conf_warning(&c, buf, sizeof buf));
    c.max_line = c.max_value + CONF_ENVELOPE - 1;
    assert_non_null(conf_warning(&c, buf, sizeof buf));
    assert_non_null(strstr(buf, "max-line (1114111)"));
    assert_non_null(strstr(buf, "at least 1114112"));
    c.max_value = 64;
    assert_null(conf_warning(&c, buf, sizeof buf));
}

/* Every key, each set away from its default, '_' and '-' spellings. */
static void test_every_key(void **state)
{
    char err[600];
    conf c;
    (void)state;

    assert_int_equal(load(&c,
                          "bind = ::1\n"
                          "port = 7000\n"
                          "port_file = /run/x/port\n"
                          "gomaxprocs = 3\n"
                          "log-level = debug\n"
                          "max_line = 64k\n"
                          "max_depth = 9\n"
                          "max_value = 2m\n"
                          "max_conns = 12\n"
                          "max_objects = 13\n"
                          "max_outbuf = 1g\n"
                          "max_batch = 14\n"
                          "max_select = 15\n"
                          "fair_batch = 16\n"
                          "metrics_bind = 0.0.0.0\n"
                          "metrics_port = 9100\n"
                          "metrics-port-file = /run/x/mport\n"
                          "shutdown_grace_ms = 250\n",
                          err, sizeof err),
                     0);
    assert_string_equal(c.bind, "::1");
    assert_int_equal(c.port, 7000);
    assert_string_equal(c.port_file, "/run/x/port");
    assert_int_equal(c.gomaxprocs, 3);
    assert_int_equal(c.log_level, LOG_LVL_DEBUG);
    assert_int_equal(c.max_line, 64 * 1024);
    assert_int_equal(c.max_depth, 9);
    assert_int_equal(c.max_value, 2 * 1024 * 1024);
    assert_int_equal(c.max_conns, 12);
    assert_int_equal(c.max_objects, 13);
    assert_int_equal(c.max_outbuf, 1024LL * 1024 * 1024);
    assert_int_equal(c.max_batch, 14);
    assert_int_equal(c.max_select, 15);
    assert_int_equal(c.fair_batch, 16);
    assert_string_equal(c.metrics_bind, "0.0.0.0");
    assert_int_equal(c.metrics_port, 9100);
    assert_string_equal(c.metrics_port_file, "/run/x/mport");
    assert_int_equal(c.shutdown_grace_ms, 250);

    assert_int_equal(load(&c, "metrics_port = auto\n", err, sizeof err), 0);
    assert_int_equal(c.metrics_port, -1);
    assert_int_equal(load(&c, "metrics_port = 0\n", err, sizeof err), 0);
    assert_int_equal(c.metrics_port, 0);
    assert_int_equal(
        load(&c, "log_level = warning\nlog_level = error\n", err, sizeof err),
        0);
    assert_int_equal(c.log_level, LOG_LVL_ERROR); /* the last one wins */
}

static void test_syntax(void **state)
{
    char err[600];
    conf c;
    (void)state;

    assert_int_equal(load(&c,
                          "# a comment\n"
                          "\n"
                          "   \t\n"
                          "  port=1234   # trailing comment\n"
                          "bind = \"127.0.0.2\"  # quoted\n"
                          "port_file = /srv/a#b\n"
                          "metrics_port_file = \"/tmp/with space\"\r\n"
                          "max_depth\t=\t7\r\n"
                          "log_level = debug", /* no final newline */
                          err, sizeof err),
                     0);
    assert_int_equal(c.port, 1234);
    assert_string_equal(c.bind, "127.0.0.2");
    assert_string_equal(c.port_file, "/srv/a#b");
    assert_string_equal(c.metrics_port_file, "/tmp/with space");
    assert_int_equal(c.max_depth, 7);
    assert_int_equal(c.log_level, LOG_LVL_DEBUG);
    /* An empty string value clears a path. */
    assert_int_equal(load(&c, "port_file = \"\"\n", err, sizeof err), 0);
    assert_string_equal(c.port_file, "");
    assert_int_equal(load(&c, "", err, sizeof err), 0);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("port = 1\n\n# c\nfoo = 1\n", "t.conf:4: unknown key 'foo'");
    expect_error("port = abc\n",
                 "t.conf:1: port: 'abc' is not a number in 0..65535");
    expect_error("\nport = 70000\n",
                 "t.conf:2: port: '70000' is not a number in 0..65535");
    expect_error("port = -1\n",
                 "t.conf:1: port: '-1' is not a number in 0..65535");
    expect_error("port =\n", "t.conf:1: port: '' is not a number in 0..65535");
    expect_error("port = 12 34\n",
                 "t.conf:1: port: '12 34' is not a number in 0..65535");
    expect_error("max_value = 2x\n",
                 "t.conf:1: max-value: '2x' is not a number in "
                 "1..1073741824");
    expect_error("max_line = 10\n",
                 "t.conf:1: max-line: '10' is not a number in "
                 "64..1073741824");
    expect_error("gomaxprocs = 1000\n",
                 "t.conf:1: gomaxprocs: '1000' is not a number in 0..256");
    expect_error("metrics_port = automatic\n",
                 "t.conf:1: metrics-port: 'automatic' is not a number in "
                 "0..65535");
    expect_error("log_level = loud\n",
                 "t.conf:1: log-level: 'loud' is not error, warn, info or "
                 "debug");
    expect_error("port 2426\n", "t.conf:1: expected '=' after 'port'");
    expect_error("= 3\n", "t.conf:1: expected 'key = value', found '= 3'");
    expect_error("bind = \"127.0.0.1\n",
                 "t.conf:1: bind: missing closing '\"'");
    expect_error("bind = \"a\" b\n",
                 "t.conf:1: bind: text after the quoted value");
    expect_error("config = /etc/other.conf\n",
                 "t.conf:1: 'config' cannot be set in a config file");
    expect_error("PORT = 1\n", "t.conf:1: unknown key 'PORT'");
}

static void test_file_errors(void **state)
{
    char err[600], want[600];
    const char *p;
    conf c;
    (void)state;

    conf_defaults(&c);
    snprintf(want, sizeof want, "%s/none.conf: No such file or directory",
             tmpdir);
    {
        char none[400];
        snprintf(none, sizeof none, "%s/none.conf", tmpdir);
        assert_int_equal(cfg_load_file(&c, none, err, sizeof err), -1);
    }
    assert_string_equal(err, want);

    p = write_file("bad.conf", "port = 1\nlog_level = info\nnope = 2\n");
    assert_int_equal(cfg_load_file(&c, p, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:3: unknown key 'nope'", p);
    assert_string_equal(err, want);

    p = write_file("good.conf", "port = 4321\n");
    assert_int_equal(cfg_load_file(&c, p, err, sizeof err), 0);
    assert_int_equal(c.port, 4321);
}

/* Finds configs/chand.conf from the working directory or $CHAND_BIN. */
/* The shipped sample is valid, serves 127.0.0.1:2426 (make run), and
 * documents every key (set or commented out) but "config". */
static void test_sample(void **state)
{
    char *text, err[600], keyline[128];
    size_t n;
    const char *sample = testpath("configs/chand.conf");
    FILE *keys;
    conf c, d;
    (void)state;

    assert_non_null(sample);
    text = testfile_read(sample, &n);
    assert_non_null(text);
    conf_defaults(&c);
    if (cfg_load_text(&c, "chand.conf", text, err, sizeof err) != 0)
        fail_msg("sample: %s", err);
    assert_string_equal(c.bind, "127.0.0.1");
    assert_int_equal(c.port, 2426);
    /* Each documented default is the built-in one (metrics is turned on
     * in the sample, on purpose and said so). */
    conf_defaults(&d);
    assert_int_equal(c.max_line, d.max_line);
    assert_int_equal(c.max_depth, d.max_depth);
    assert_int_equal(c.max_value, d.max_value);
    assert_int_equal(c.max_conns, d.max_conns);
    assert_int_equal(c.max_objects, d.max_objects);
    assert_int_equal(c.max_outbuf, d.max_outbuf);
    assert_int_equal(c.max_batch, d.max_batch);
    assert_int_equal(c.max_select, d.max_select);
    assert_int_equal(c.fair_batch, d.fair_batch);
    assert_int_equal(c.shutdown_grace_ms, d.shutdown_grace_ms);
    assert_int_equal(c.log_level, d.log_level);
    assert_int_equal(c.gomaxprocs, d.gomaxprocs);
    /* The sample persists; a bare chand keeps state in memory. */
    assert_string_equal(c.data_dir, "/var/lib/chand");
    assert_string_equal(d.data_dir, "");
    assert_int_equal(c.fsync, d.fsync);
    assert_int_equal(c.compact_floor, d.compact_floor);

    /* Every key --help lists appears in the sample. */
    keys = tmpfile();
    assert_non_null(keys);
    conf_usage(&d, keys);
    rewind(keys);
    int seen = 0;
    while (fgets(keyline, sizeof keyline, keys)) {
        char name[64], want1[80], want2[80];
        if (sscanf(keyline, " --%63s", name) != 1 ||
            strcmp(name, "config") == 0)
            continue;
        for (char *p = name; *p; p++)
            if (*p == '-')
                *p = '_';
        snprintf(want1, sizeof want1, "\n%s = ", name);
        snprintf(want2, sizeof want2, "\n#%s = ", name);
        if (!strstr(text, want1) && !strstr(text, want2))
            fail_msg("configs/chand.conf does not document '%s'", name);
        seen++;
    }
    fclose(keys);
    assert_true(seen >= 18);
    free(text);
}

/* fsync takes always, everysec or no, and nothing else. */
static void test_fsync_values(void **state)
{
    static const char *const ok[] = {"no", "everysec", "always"};
    char err[256];
    conf c;
    (void)state;

    conf_defaults(&c);
    assert_int_equal(c.fsync, 1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(conf_set(&c, "fsync", ok[i], err, sizeof err), 0);
        assert_int_equal(c.fsync, i);
    }
    assert_int_equal(conf_set(&c, "fsync", "sometimes", err, sizeof err), -1);
    assert_non_null(strstr(err, "always, everysec or no"));
    assert_int_equal(c.fsync, 2);
    assert_int_equal(conf_set(&c, "data_dir", "/x", err, sizeof err), 0);
    assert_string_equal(c.data_dir, "/x");
}

/* The replication settings (issue 19): values, bounds, the node id's
 * size, and their flags. */
static void test_cluster_keys(void **state)
{
    char err[256], big[64];
    conf c;
    (void)state;

    conf_defaults(&c);
    assert_string_equal(c.cluster, "");
    assert_int_equal(c.election_timeout_ms, 1000);
    assert_int_equal(c.cluster_join, 0);
    assert_int_equal(conf_set(&c, "cluster", "1=127.0.0.1:1:2,2=127.0.0.1:3:4",
                              err, sizeof err),
                     0);
    assert_string_equal(c.cluster, "1=127.0.0.1:1:2,2=127.0.0.1:3:4");
    assert_int_equal(conf_set(&c, "node_id", "2", err, sizeof err), 0);
    assert_string_equal(c.node_id, "2");
    memset(big, '7', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(conf_set(&c, "node-id", big, err, sizeof err), -1);
    assert_non_null(strstr(err, "too long"));
    assert_string_equal(c.node_id, "2");
    assert_int_equal(conf_set(&c, "election_timeout_ms", "99", err, sizeof err),
                     -1);
    assert_int_equal(
        conf_set(&c, "election-timeout-ms", "1500", err, sizeof err), 0);
    assert_int_equal(c.election_timeout_ms, 1500);
    assert_int_equal(conf_set(&c, "cluster_join", "yes", err, sizeof err), 0);
    assert_int_equal(c.cluster_join, 1);
    assert_true(conf_key_is_switch("cluster-join"));
}

/* Runs cfg_from_args on a NULL-terminated list; returns its result. */
static int from_args(conf *c, int *code, const char **args)
{
    static char *argv[32];
    int argc = 0;

    argv[argc++] = (char *)"chand";
    for (; *args; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    *code = -1;
    return cfg_from_args(argc, argv, c, code);
}

static void test_args_order(void **state)
{
    const char *p = write_file("a.conf", "port = 5\nmax_conns = 50\n"
                                         "log_level = warn\n");
    char path[400];
    int code;
    conf c;
    (void)state;

    snprintf(path, sizeof path, "%s", p);
    /* A flag before --config still overrides the file. */
    assert_int_equal(
        from_args(&c, &code,
                  (const char *[]){"--port", "7", "--config", path, NULL}),
        0);
    assert_int_equal(c.port, 7);
    assert_int_equal(c.max_conns, 50);
    assert_int_equal(c.log_level, LOG_LVL_WARN);
    assert_string_equal(c.config, path);
    /* --key=value, after the file. */
    assert_int_equal(
        from_args(&c, &code,
                  (const char *[]){"--config", path, "--max_conns=9", NULL}),
        0);
    assert_int_equal(c.port, 5);
    assert_int_equal(c.max_conns, 9);

    /* --test-config: ok -> exit 0; bad file -> 1; bad flag -> 2. */
    assert_int_equal(
        from_args(&c, &code,
                  (const char *[]){"--test-config", "--config", path, NULL}),
        1);
    assert_int_equal(code, 0);
    p = write_file("b.conf", "port = 5\nbogus = 1\n");
    snprintf(path, sizeof path, "%s", p);
    assert_int_equal(
        from_args(&c, &code,
                  (const char *[]){"--config", path, "--test-config", NULL}),
        1);
    assert_int_equal(code, 1);
    assert_int_equal(
        from_args(&c, &code, (const char *[]){"--config", path, NULL}), 1);
    assert_int_equal(code, 1); /* and the daemon does not start */
    assert_int_equal(
        from_args(&c, &code, (const char *[]){"--nope", "1", NULL}), 1);
    assert_int_equal(code, 2);
    assert_int_equal(
        from_args(&c, &code, (const char *[]){"--port", "x", NULL}), 1);
    assert_int_equal(code, 2);
    assert_int_equal(from_args(&c, &code, (const char *[]){"stray", NULL}), 1);
    assert_int_equal(code, 2);
    assert_int_equal(from_args(&c, &code, (const char *[]){"--config", NULL}),
                     1);
    assert_int_equal(code, 2);
    assert_int_equal(from_args(&c, &code, (const char *[]){NULL}), 0);
    assert_int_equal(c.port, 2426);
}

static void test_reload(void **state)
{
    const char *p = write_file("r.conf", "port = 5\nlog_level = info\n"
                                         "max_batch = 10\n");
    char path[400], err[600], want[600];
    int code;
    conf c;
    (void)state;

    snprintf(path, sizeof path, "%s", p);
    assert_int_equal(from_args(&c, &code,
                               (const char *[]){"--config", path, "--max-batch",
                                                "20", NULL}),
                     0);
    assert_int_equal(c.max_batch, 20);
    write_file("r.conf", "port = 6\nlog_level = debug\nmax_batch = 11\n"
                         "max_select = 3\n");
    assert_int_equal(cfg_reload(&c, err, sizeof err), 0);
    assert_int_equal(c.port, 6);
    assert_int_equal(c.log_level, LOG_LVL_DEBUG);
    assert_int_equal(c.max_select, 3);
    assert_int_equal(c.max_batch, 20); /* the flag still wins */
    assert_string_equal(c.config, path);
    /* A line removed from the file goes back to its default. */
    write_file("r.conf", "port = 6\n");
    assert_int_equal(cfg_reload(&c, err, sizeof err), 0);
    assert_int_equal(c.log_level, LOG_LVL_INFO);
    write_file("r.conf", "port = 6\nlog_level = shouty\n");
    assert_int_equal(cfg_reload(&c, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "%s:2: log-level: 'shouty' is not error, warn, info or debug",
             path);
    assert_string_equal(err, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_fsync_values),
        cmocka_unit_test(test_cluster_keys),
        cmocka_unit_test(test_args_order),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_line_fits_value),
    };
    return cmocka_run_group_tests_name("conf", tests, setup, teardown);
}
