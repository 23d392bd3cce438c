/*
 * test_repl_disk.c - unit tests of repl_disk.c, the wrapper that keeps a
 * truncation and a snapshot write (or two truncations) from being in
 * raft_uv's hands at once, against a fake raft_io that records what it is
 * given and completes requests when the test says.
 *
 * Each case checks the order in which requests reach the fake, and what
 * raft's own callbacks receive: a truncation held behind a snapshot write,
 * a snapshot write held behind a truncation until an append requested
 * after it completes (an earlier append's completion does not count),
 * truncations one at a time, appends passing a held snapshot write but
 * never a held truncation, cancellation on close, and failures that must
 * not hold requests forever or let appends pass a failed truncation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl_internal.h"

#define MAXREQ 16

/* The fake raft_uv: what it was handed, in order, and what it still
 * holds.  Appends are named by their entry's term. */
static struct fake {
    char calls[256];
    struct raft_io_append *apps[MAXREQ];
    raft_io_append_cb app_cbs[MAXREQ];
    raft_term app_names[MAXREQ];
    int n_apps;
    struct raft_io_snapshot_put *put;
    raft_io_snapshot_put_cb put_cb;
    int fail_truncate, fail_append;
    bool closed;
} F;

/* raft's side: each outer request's completion status (-1: none yet). */
static struct raft_io_append outer_apps[MAXREQ];
static int app_status[MAXREQ];
static struct raft_entry ents[MAXREQ];
static struct raft_io_snapshot_put outer_put;
static int put_status;
static repl_node *N;

static void note(const char *fmt, ...)
{
    size_t len = strlen(F.calls);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(F.calls + len, sizeof F.calls - len, fmt, ap);
    va_end(ap);
}

static int fake_append(struct raft_io *io, struct raft_io_append *req,
                       const struct raft_entry entries[], unsigned n,
                       raft_io_append_cb cb)
{
    (void)io;
    assert_int_equal(n, 1);
    if (F.fail_append)
        return F.fail_append;
    note(" A%llu", (unsigned long long)entries[0].term);
    F.apps[F.n_apps] = req;
    F.app_cbs[F.n_apps] = cb;
    F.app_names[F.n_apps++] = entries[0].term;
    return 0;
}

static int fake_truncate(struct raft_io *io, raft_index index)
{
    (void)io;
    if (F.fail_truncate)
        return F.fail_truncate;
    note(" T%llu", (unsigned long long)index);
    return 0;
}

static int fake_put(struct raft_io *io, unsigned trailing,
                    struct raft_io_snapshot_put *req,
                    const struct raft_snapshot *snapshot,
                    raft_io_snapshot_put_cb cb)
{
    (void)io;
    (void)trailing;
    (void)snapshot;
    assert_null(F.put); /* raft never asks for two at once */
    note(" S");
    F.put = req;
    F.put_cb = cb;
    return 0;
}

static void fake_close(struct raft_io *io, raft_io_close_cb cb)
{
    (void)io;
    (void)cb;
    F.closed = true;
}

static void outer_app_cb(struct raft_io_append *req, int status)
{
    app_status[req - outer_apps] = status;
}

static void outer_put_cb(struct raft_io_snapshot_put *req, int status)
{
    assert_ptr_equal(req, &outer_put);
    put_status = status;
}

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    for (int i = 0; i < MAXREQ; i++) {
        app_status[i] = -1;
        ents[i].term = (raft_term)i;
    }
    put_status = -1;
    N = calloc(1, sizeof *N);
    assert_non_null(N);
    N->io.append = fake_append;
    N->io.truncate = fake_truncate;
    N->io.snapshot_put = fake_put;
    N->io.close = fake_close;
    repl__disk_wrap(N);
    return 0;
}

static void finish_put(int status);

static int teardown(void **state)
{
    (void)state;
    if (!F.closed)
        N->io.close(&N->io, NULL);
    /* raft_uv cancels what it still holds as it closes. */
    for (int i = 0; i < F.n_apps; i++)
        if (F.apps[i] != NULL) {
            struct raft_io_append *req = F.apps[i];
            F.apps[i] = NULL;
            F.app_cbs[i](req, RAFT_CANCELED);
        }
    if (F.put != NULL)
        finish_put(RAFT_CANCELED);
    free(N);
    return 0;
}

/* raft's calls, through the wrapper. */
static int append(int name)
{
    return N->io.append(&N->io, &outer_apps[name], &ents[name], 1,
                        outer_app_cb);
}

static int truncate_at(raft_index index)
{
    return N->io.truncate(&N->io, index);
}

static int put(void)
{
    static struct raft_snapshot snap;
    return N->io.snapshot_put(&N->io, 2, &outer_put, &snap, outer_put_cb);
}

/* The fake finishes the append it was given for entry `name`. */
static void finish_append(int name, int status)
{
    for (int i = 0; i < F.n_apps; i++)
        if (F.apps[i] != NULL && F.app_names[i] == (raft_term)name) {
            struct raft_io_append *req = F.apps[i];
            F.apps[i] = NULL;
            F.app_cbs[i](req, status);
            return;
        }
    fail_msg("append A%d was never handed to raft_uv", name);
}

static void finish_put(int status)
{
    struct raft_io_snapshot_put *req = F.put;
    assert_non_null(req);
    F.put = NULL;
    F.put_cb(req, status);
}

static void test_truncate_waits_for_snapshot(void **state)
{
    (void)state;
    assert_int_equal(put(), 0);
    assert_int_equal(truncate_at(5), 0);
    assert_int_equal(append(1), 0);
    assert_string_equal(F.calls, " S");
    assert_int_equal(N->disk.holds, 1); /* the truncation; A1 only follows */
    finish_put(0);
    assert_int_equal(put_status, 0);
    assert_string_equal(F.calls, " S T5 A1");
    finish_append(1, 0);
    assert_int_equal(app_status[1], 0);
}

static void test_snapshot_waits_for_truncate(void **state)
{
    (void)state;
    assert_int_equal(append(1), 0);
    assert_int_equal(truncate_at(5), 0);
    assert_int_equal(append(2), 0);
    assert_int_equal(put(), 0);
    assert_string_equal(F.calls, " A1 T5 A2");
    assert_int_equal(N->disk.holds, 1);
    /* A1 was asked for before the truncation: its end proves nothing. */
    finish_append(1, 0);
    assert_string_equal(F.calls, " A1 T5 A2");
    finish_append(2, 0);
    assert_string_equal(F.calls, " A1 T5 A2 S");
    assert_int_equal(app_status[1], 0);
    assert_int_equal(app_status[2], 0);
    finish_put(0);
    assert_int_equal(put_status, 0);
}

static void test_truncations_one_at_a_time(void **state)
{
    (void)state;
    assert_int_equal(truncate_at(5), 0);
    assert_int_equal(append(1), 0);
    assert_int_equal(truncate_at(3), 0);
    assert_int_equal(append(2), 0);
    assert_string_equal(F.calls, " T5 A1");
    finish_append(1, 0);
    assert_string_equal(F.calls, " T5 A1 T3 A2");
    /* Nothing else waits now: a snapshot goes once A2 is done. */
    assert_int_equal(put(), 0);
    assert_string_equal(F.calls, " T5 A1 T3 A2");
    finish_append(2, 0);
    assert_string_equal(F.calls, " T5 A1 T3 A2 S");
}

static void test_append_passes_held_snapshot(void **state)
{
    (void)state;
    assert_int_equal(truncate_at(5), 0);
    assert_int_equal(append(1), 0);
    assert_int_equal(put(), 0);
    assert_int_equal(append(2), 0);
    assert_string_equal(F.calls, " T5 A1 A2");
    finish_append(2, 0);
    assert_string_equal(F.calls, " T5 A1 A2 S");
}

/* Held [T1 A1 S A2]: when T1 goes, A2 passes the held S, and an append
 * that comes later still lands after A2. */
static void test_order_behind_held_snapshot(void **state)
{
    (void)state;
    assert_int_equal(truncate_at(9), 0);
    assert_int_equal(append(0), 0);
    assert_int_equal(truncate_at(7), 0);
    assert_int_equal(append(1), 0);
    assert_int_equal(put(), 0);
    assert_int_equal(append(2), 0);
    assert_string_equal(F.calls, " T9 A0");
    finish_append(0, 0);
    assert_string_equal(F.calls, " T9 A0 T7 A1 A2");
    assert_int_equal(append(3), 0);
    assert_string_equal(F.calls, " T9 A0 T7 A1 A2 A3");
    finish_append(1, 0);
    assert_string_equal(F.calls, " T9 A0 T7 A1 A2 A3 S");
    /* The snapshot is in flight: a truncation waits for it again. */
    assert_int_equal(truncate_at(4), 0);
    assert_int_equal(append(4), 0);
    assert_string_equal(F.calls, " T9 A0 T7 A1 A2 A3 S");
    finish_put(0);
    assert_string_equal(F.calls, " T9 A0 T7 A1 A2 A3 S T4 A4");
}

static void test_close_cancels_held(void **state)
{
    (void)state;
    assert_int_equal(put(), 0);
    assert_int_equal(truncate_at(5), 0);
    assert_int_equal(append(1), 0);
    N->io.close(&N->io, NULL);
    assert_true(F.closed);
    assert_int_equal(app_status[1], RAFT_CANCELED);
    assert_string_equal(F.calls, " S");
    /* raft_uv cancels what it holds itself; nothing is released after. */
    finish_put(RAFT_CANCELED);
    assert_int_equal(put_status, RAFT_CANCELED);
    assert_string_equal(F.calls, " S");
}

static void test_close_cancels_held_snapshot(void **state)
{
    (void)state;
    assert_int_equal(truncate_at(5), 0);
    assert_int_equal(append(1), 0);
    assert_int_equal(put(), 0);
    N->io.close(&N->io, NULL);
    assert_int_equal(put_status, RAFT_CANCELED);
    assert_string_equal(F.calls, " T5 A1");
}

/* A held truncation that fails: the appends behind it fail too, and so
 * does every later request, as raft_uv does once a write failed. */
static void test_failed_truncate(void **state)
{
    (void)state;
    assert_int_equal(put(), 0);
    assert_int_equal(truncate_at(5), 0);
    assert_int_equal(append(1), 0);
    F.fail_truncate = RAFT_NOMEM;
    finish_put(0);
    assert_int_equal(app_status[1], RAFT_IOERR);
    assert_string_equal(F.calls, " S");
    assert_int_equal(append(2), RAFT_IOERR);
    assert_int_equal(truncate_at(3), RAFT_IOERR);
    assert_int_equal(put(), RAFT_IOERR);
    assert_string_equal(F.calls, " S");
}

/* The append after a truncation fails at once: no later append is coming
 * to show the truncation done, and a snapshot must not wait forever. */
static void test_failed_append_after_truncate(void **state)
{
    (void)state;
    assert_int_equal(truncate_at(5), 0);
    F.fail_append = RAFT_IOERR;
    assert_int_equal(append(1), RAFT_IOERR);
    F.fail_append = 0;
    assert_int_equal(put(), 0);
    assert_string_equal(F.calls, " T5 S");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_truncate_waits_for_snapshot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_waits_for_truncate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_truncations_one_at_a_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_append_passes_held_snapshot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_order_behind_held_snapshot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_cancels_held, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_cancels_held_snapshot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_truncate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_append_after_truncate,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("repl_disk", tests, NULL, NULL);
}
