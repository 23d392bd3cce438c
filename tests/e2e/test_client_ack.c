/*
 * test_client_ack.c - libchand's acknowledged delivery against a real
 * chand (PROTOCOL.md "Acknowledged delivery"): recv with ack, ack, nack
 * (redeliveries first, in send order), touch, term, expiry, the end of
 * the receiving session, dead letters, close and len with values in
 * flight, select with ack, channel options, an unbuffered rendezvous
 * that completes on ack, and the asynchronous calls.
 *
 * One daemon for the group.  Waits for asynchronous effects poll until a
 * deadline; the one fixed pause (the unbuffered send must not complete
 * before the ack) proves an absence and cannot flake.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "chand.h"

#include "../common/e2e.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Receives with ack within 5 s and checks the value is the string want;
 * returns the delivery id, its attempt in *attempt. */
static int64_t take(chand_conn *c, const char *name, int64_t wait_ms,
                    const char *want, int64_t *attempt)
{
    json_t *v = NULL;
    int64_t id = -1, att = -1;
    int rc = chand_recv_ack(c, name, wait_ms, 5000, &v, &id, &att);

    e2e_expect_rc(c, rc, 1, NULL);
    assert_true(json_is_string(v));
    if (strcmp(json_string_value(v), want) != 0)
        fail_msg("got %s, want %s", json_string_value(v), want);
    json_decref(v);
    assert_true(id > 0);
    assert_true(att >= 1);
    if (attempt)
        *attempt = att;
    return id;
}

static void expect_len(chand_conn *c, const char *name, int64_t len,
                       int64_t inflight)
{
    int64_t l = -1, cap = -1, in = -1;

    assert_int_equal(chand_len_inflight(c, name, &l, &cap, &in), 0);
    assert_int_equal(l, len);
    assert_int_equal(in, inflight);
}

static void test_ack_basic(void **state)
{
    chand_conn *c = e2e_dial();
    int64_t id, att, id2;
    int rc;

    (void)state;
    assert_int_equal(chand_make(c, "b.q", 4, "string"), 0);
    assert_int_equal(chand_send_str(c, "b.q", "a", 1000), 0);
    assert_int_equal(chand_send_str(c, "b.q", "b", 1000), 0);
    id = take(c, "b.q", 0, "a", &att);
    assert_int_equal(att, 1);
    expect_len(c, "b.q", 1, 1);
    /* In flight counts against cap: 1 queued + 1 in flight + 2 = 4. */
    assert_int_equal(chand_send_str(c, "b.q", "c", 1000), 0);
    assert_int_equal(chand_send_str(c, "b.q", "d", 1000), 0);
    e2e_expect_rc(c, chand_send_str(c, "b.q", "e", 0), CHAND_ETIMEOUT,
                  "timeout");
    assert_int_equal(chand_ack(c, "b.q", id), 0);
    expect_len(c, "b.q", 3, 0);
    /* A second ack, an ack of an id never issued, on another channel. */
    e2e_expect_rc(c, chand_ack(c, "b.q", id), CHAND_ENOTPENDING, "not_pending");
    e2e_expect_rc(c, chand_ack(c, "b.q", id + 1000000), CHAND_ENOTPENDING,
                  "not_pending");
    id2 = take(c, "b.q", 0, "b", NULL);
    assert_true(id2 != id);
    assert_int_equal(chand_make(c, "b.other", 1, NULL), 0);
    e2e_expect_rc(c, chand_ack(c, "b.other", id2), CHAND_ENOTPENDING,
                  "not_pending");
    e2e_expect_rc(c, chand_touch(c, "b.q", id, 0, NULL), CHAND_ENOTPENDING,
                  NULL);
    e2e_expect_rc(c, chand_nack(c, "b.q", id, 0, NULL), CHAND_ENOTPENDING,
                  NULL);
    e2e_expect_rc(c, chand_term(c, "b.q", id, NULL), CHAND_ENOTPENDING, NULL);
    assert_int_equal(chand_ack(c, "b.q", id2), 0);
    /* Bad input. */
    e2e_expect_rc(c, chand_ack(c, NULL, 1), CHAND_EARG, NULL);
    e2e_expect_rc(c, chand_ack(c, "b.nothere", 1), CHAND_ENOTFOUND,
                  "not_found");
    rc = chand_recv_ack(c, "b.nothere", 0, 100, NULL, NULL, NULL);
    e2e_expect_rc(c, rc, CHAND_ENOTFOUND, "not_found");
    assert_int_equal(chand_recv_ack(NULL, "b.q", 0, 0, NULL, NULL, NULL),
                     CHAND_EARG);
    e2e_hang_up(c);
}

static void test_nack_order(void **state)
{
    chand_conn *c = e2e_dial();
    int64_t i1, i2, att;

    (void)state;
    assert_int_equal(chand_make(c, "n.q", 8, NULL), 0);
    for (int i = 1; i <= 3; i++) {
        char v[4];
        snprintf(v, sizeof v, "%d", i);
        assert_int_equal(chand_send_str(c, "n.q", v, 1000), 0);
    }
    i1 = take(c, "n.q", 0, "1", NULL);
    i2 = take(c, "n.q", 0, "2", NULL);
    /* Given back in the other order: redelivered in send order, before
     * "3", which was never delivered. */
    assert_int_equal(chand_nack(c, "n.q", i2, 0, "later"), 0);
    assert_int_equal(chand_nack(c, "n.q", i1, 0, NULL), 0);
    i1 = take(c, "n.q", 0, "1", &att);
    assert_int_equal(att, 2);
    i2 = take(c, "n.q", 0, "2", &att);
    assert_int_equal(att, 2);
    assert_int_equal(chand_ack(c, "n.q", i1), 0);
    assert_int_equal(chand_ack(c, "n.q", i2), 0);
    assert_int_equal(chand_ack(c, "n.q", take(c, "n.q", 0, "3", &att)), 0);
    assert_int_equal(att, 1);
    /* nack with a delay: in flight meanwhile, then back. */
    assert_int_equal(chand_send_str(c, "n.q", "d", 1000), 0);
    i1 = take(c, "n.q", 0, "d", NULL);
    assert_int_equal(chand_nack(c, "n.q", i1, 300, NULL), 0);
    expect_len(c, "n.q", 0, 1);
    i2 = take(c, "n.q", 0, "d", &att); /* waits out the delay */
    assert_int_equal(att, 2);
    assert_int_equal(chand_ack(c, "n.q", i2), 0);
    e2e_hang_up(c);
}

static void test_expiry_and_touch(void **state)
{
    chand_conn *c = e2e_dial(), *d = e2e_dial();
    int64_t id, id2, att, granted = 0, t0;

    (void)state;
    assert_int_equal(chand_make(c, "e.q", 2, NULL), 0);
    assert_int_equal(chand_send_str(c, "e.q", "x", 1000), 0);
    id = take(c, "e.q", 200, "x", NULL);
    /* Not acked: another receiver gets it again, a new id and attempt. */
    t0 = testd_now_ms();
    id2 = take(d, "e.q", 0, "x", &att);
    assert_true(testd_now_ms() - t0 < 5000);
    assert_int_equal(att, 2);
    assert_true(id2 != id);
    /* The first worker is too late: its id is dead, and cannot ack the
     * redelivery. */
    e2e_expect_rc(c, chand_ack(c, "e.q", id), CHAND_ENOTPENDING, "not_pending");
    assert_int_equal(chand_nack(d, "e.q", id2, 0, NULL), 0);

    /* touch keeps a delivery alive well past its first deadline (a
     * touch every 50 ms, a deadline of 1 s: a stall of the test process
     * of most of a second would be needed to miss one). */
    id = take(c, "e.q", 1000, "x", NULL);
    t0 = testd_now_ms();
    while (testd_now_ms() - t0 < 2500) {
        assert_int_equal(chand_touch(c, "e.q", id, 0, &granted), 0);
        assert_int_equal(granted, 1000);
        testd_sleep_ms(50);
    }
    expect_len(c, "e.q", 0, 1);
    assert_int_equal(chand_touch(c, "e.q", id, 5000, &granted), 0);
    assert_int_equal(granted, 5000);
    assert_int_equal(chand_ack(c, "e.q", id), 0);
    e2e_hang_up(c);
    e2e_hang_up(d);
}

static void test_session_end(void **state)
{
    chand_conn *c = e2e_dial(), *d = e2e_dial();
    int64_t att;

    (void)state;
    assert_int_equal(chand_make(c, "s.q", 2, NULL), 0);
    assert_int_equal(chand_send_str(c, "s.q", "v", 1000), 0);
    (void)take(c, "s.q", 60000, "v", NULL);
    e2e_hang_up(c); /* long before the wait: the session's end redelivers */
    assert_int_equal(chand_ack(d, "s.q", take(d, "s.q", 0, "v", &att)), 0);
    assert_int_equal(att, 2);
    e2e_hang_up(d);
}

static void expect_dead(chand_conn *c, const char *dlq, const char *value,
                        int attempts, const char *reason)
{
    json_t *v = NULL;

    assert_int_equal(chand_recv(c, dlq, 5000, &v), 1);
    assert_string_equal(json_string_value(json_object_get(v, "origin")), "d.q");
    assert_string_equal(json_string_value(json_object_get(v, "value")), value);
    assert_int_equal(json_integer_value(json_object_get(v, "attempts")),
                     attempts);
    if (reason)
        assert_string_equal(json_string_value(json_object_get(v, "reason")),
                            reason);
    json_decref(v);
}

static void test_dead_letters(void **state)
{
    chand_conn *c = e2e_dial();
    chand_chan_opts *o = chand_chan_opts_new();
    int64_t id;

    (void)state;
    assert_non_null(o);
    assert_int_equal(chand_chan_opts_max_deliver(o, 0), 0);
    assert_int_equal(chand_chan_opts_max_deliver(o, -1), CHAND_EARG);
    assert_int_equal(chand_chan_opts_max_deliver(o, 1000001), CHAND_EARG);
    assert_int_equal(chand_chan_opts_max_deliver(o, 2), 0);
    assert_int_equal(chand_chan_opts_dead_letter(o, "d.dlq"), 0);
    assert_int_equal(chand_chan_opts_type(o, "string"), 0);
    assert_int_equal(chand_make(c, "d.dlq", 10, NULL), 0);
    assert_int_equal(chand_make_opts(c, "d.q", 4, o), 0);
    assert_int_equal(chand_make_opts(c, "d.q", 4, o), 0); /* same: ok */
    assert_int_equal(chand_chan_opts_max_deliver(o, 3), 0);
    e2e_expect_rc(c, chand_make_opts(c, "d.q", 4, o), CHAND_EEXISTS, "exists");
    chand_chan_opts_free(o);
    chand_chan_opts_free(NULL);

    /* max_deliver 2: two nacks and it is a dead letter. */
    assert_int_equal(chand_send_str(c, "d.q", "x", 1000), 0);
    assert_int_equal(
        chand_nack(c, "d.q", take(c, "d.q", 0, "x", NULL), 0, "first"), 0);
    assert_int_equal(
        chand_nack(c, "d.q", take(c, "d.q", 0, "x", NULL), 0, "second"), 0);
    expect_dead(c, "d.dlq", "x", 2, "second");
    expect_len(c, "d.q", 0, 0);
    /* term: at once, whatever the attempts. */
    assert_int_equal(chand_send_str(c, "d.q", "y", 1000), 0);
    id = take(c, "d.q", 0, "y", NULL);
    assert_int_equal(chand_term(c, "d.q", id, "poison"), 0);
    expect_dead(c, "d.dlq", "y", 1, "poison");
    e2e_expect_rc(c, chand_ack(c, "d.q", id), CHAND_ENOTPENDING, NULL);
    /* Expiry of the last attempt dead-letters too. */
    assert_int_equal(chand_send_str(c, "d.q", "z", 1000), 0);
    (void)take(c, "d.q", 100, "z", NULL);
    (void)take(c, "d.q", 100, "z", NULL);
    expect_dead(c, "d.dlq", "z", 2, "expired");
    e2e_hang_up(c);
}

static void test_close_with_inflight(void **state)
{
    chand_conn *c = e2e_dial(), *d = e2e_dial();
    json_t *v = NULL;
    int64_t id;

    (void)state;
    assert_int_equal(chand_make(c, "c.q", 2, NULL), 0);
    assert_int_equal(chand_send_str(c, "c.q", "v", 1000), 0);
    id = take(c, "c.q", 0, "v", NULL);
    assert_int_equal(chand_close(c, "c.q"), 0);
    e2e_expect_rc(c, chand_send_str(c, "c.q", "w", 0), CHAND_ECLOSED, "closed");
    /* Closed and drained, but a value in flight: a receiver waits. */
    e2e_expect_rc(d, chand_recv_ack(d, "c.q", 0, 200, &v, NULL, NULL),
                  CHAND_ETIMEOUT, "timeout");
    json_decref(v);
    e2e_expect_rc(d, chand_recv(d, "c.q", 200, &v), CHAND_ETIMEOUT, "timeout");
    json_decref(v);
    assert_int_equal(chand_ack(c, "c.q", id), 0);
    assert_int_equal(chand_recv_ack(d, "c.q", 0, 2000, &v, &id, NULL), 0);
    assert_true(json_is_null(v));
    assert_int_equal(id, 0);
    json_decref(v);
    e2e_hang_up(c);
    e2e_hang_up(d);
}

static void test_select_ack(void **state)
{
    chand_conn *c = e2e_dial();
    chand_case cs[2] = {{.dir = CHAND_RECV_ACK, .name = "x.a"},
                        {.dir = CHAND_RECV, .name = "x.b"}};
    json_t *v = NULL;
    int64_t id = -1, att = -1;
    bool ok = false;
    int index = -2;

    (void)state;
    assert_int_equal(chand_make(c, "x.a", 2, NULL), 0);
    assert_int_equal(chand_make(c, "x.b", 2, NULL), 0);
    assert_int_equal(chand_send_str(c, "x.a", "va", 1000), 0);
    e2e_expect_rc(c, chand_select(c, cs, 2, false, 1000, &index, &v, &ok),
                  CHAND_EARG, NULL);
    assert_int_equal(
        chand_select_ack(c, cs, 2, false, 0, 2000, &index, &v, &ok, &id, &att),
        0);
    assert_int_equal(index, 0);
    assert_true(ok);
    assert_string_equal(json_string_value(v), "va");
    json_decref(v);
    assert_true(id > 0);
    assert_int_equal(att, 1);
    expect_len(c, "x.a", 0, 1);
    assert_int_equal(chand_ack(c, "x.a", id), 0);
    /* A plain case taken: no delivery. */
    assert_int_equal(chand_send_str(c, "x.b", "vb", 1000), 0);
    assert_int_equal(
        chand_select_ack(c, cs, 2, false, 0, 2000, &index, &v, &ok, &id, &att),
        0);
    assert_int_equal(index, 1);
    assert_string_equal(json_string_value(v), "vb");
    json_decref(v);
    assert_int_equal(id, 0);
    expect_len(c, "x.b", 0, 0);
    e2e_hang_up(c);
}

/* ---- the asynchronous calls ---- */

typedef struct astate {
    struct event_base *base;
    chand_async *rx, *tx;
    int send_rc, send_done; /* the unbuffered send */
    int recv_rc;
    int64_t id, attempt;
    char value[32];
    int ack_rc, stale_rc, touch_rc, steps;
    int64_t touch_wait;
    struct event *timer;
} astate;

static void a_send_cb(chand_async *a, int rc, json_t *res,
                      const chand_error *err, void *arg)
{
    astate *s = arg;

    (void)a;
    (void)res;
    (void)err;
    s->send_rc = rc;
    s->send_done++;
}

static void a_stale_cb(chand_async *a, int rc, json_t *res,
                       const chand_error *err, void *arg)
{
    astate *s = arg;

    (void)a;
    (void)res;
    s->stale_rc = rc;
    if (rc < 0 && strcmp(err->reason, "not_pending") != 0)
        s->stale_rc = -999;
}

static void a_ack_cb(chand_async *a, int rc, json_t *res,
                     const chand_error *err, void *arg)
{
    astate *s = arg;

    (void)res;
    (void)err;
    s->ack_rc = rc;
    /* The acked id is dead now. */
    assert_int_equal(chand_async_ack(a, "a.u", s->id, a_stale_cb, s), 0);
}

static void a_touch_cb(chand_async *a, int rc, json_t *res,
                       const chand_error *err, void *arg)
{
    astate *s = arg;

    (void)a;
    (void)err;
    s->touch_rc = rc;
    if (rc == 0)
        s->touch_wait = json_integer_value(json_object_get(res, "ack_wait_ms"));
}

/* 300 ms after the value was taken: the sender must still wait. */
static void a_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    astate *s = arg;

    (void)fd;
    (void)what;
    s->steps = s->send_done; /* 0 expected */
    assert_int_equal(chand_async_ack(s->rx, "a.u", s->id, a_ack_cb, s), 0);
}

static void a_recv_cb(chand_async *a, int rc, json_t *value, int64_t id,
                      int64_t attempt, const chand_error *err, void *arg)
{
    astate *s = arg;
    struct timeval tv = {0, 300 * 1000};

    (void)err;
    s->recv_rc = rc;
    s->id = id;
    s->attempt = attempt;
    if (json_is_string(value))
        snprintf(s->value, sizeof s->value, "%s", json_string_value(value));
    if (rc != 1)
        return;
    assert_int_equal(chand_async_touch(a, "a.u", id, 10000, a_touch_cb, s), 0);
    s->timer = evtimer_new(s->base, a_timer_cb, s);
    assert_non_null(s->timer);
    evtimer_add(s->timer, &tv);
}

/* Runs the loop until *flag is set or ms passed; returns *flag. */
static int run_until(astate *s, const int *flag, int ms)
{
    int64_t end = testd_now_ms() + ms;

    while (!*flag && testd_now_ms() < end) {
        struct timeval tv = {0, 20 * 1000};
        event_base_loopexit(s->base, &tv);
        event_base_dispatch(s->base);
    }
    return *flag;
}

static void a_rc_cb(chand_async *a, int rc, json_t *res, const chand_error *err,
                    void *arg)
{
    int *out = arg;

    (void)a;
    (void)res;
    (void)err;
    *out = rc == 0 ? 1 : rc;
}

static void a_take_cb(chand_async *a, int rc, json_t *value, int64_t id,
                      int64_t attempt, const chand_error *err, void *arg)
{
    astate *s = arg;

    (void)a;
    (void)err;
    (void)value;
    s->recv_rc = rc;
    s->id = id;
    s->attempt = attempt;
    s->steps++;
}

static void test_async_unbuffered(void **state)
{
    chand_conn *c = e2e_dial();
    astate s = {.base = event_base_new(), .stale_rc = 1};
    int dead = 0;

    (void)state;
    assert_non_null(s.base);
    assert_int_equal(chand_make(c, "a.u", 0, NULL), 0);
    assert_int_equal(chand_async_connect(s.base, "127.0.0.1", D.port, 5000,
                                         NULL, NULL, &s.tx),
                     0);
    assert_int_equal(chand_async_connect(s.base, "127.0.0.1", D.port, 5000,
                                         NULL, NULL, &s.rx),
                     0);
    assert_int_equal(
        chand_async_call(s.tx, "send",
                         json_pack("{s:s, s:s}", "name", "a.u", "value", "job"),
                         10000, a_send_cb, &s),
        0);
    assert_int_equal(chand_async_recv_ack(s.rx, "a.u", 0, 10000, a_recv_cb, &s),
                     0);
    /* Bad input never reaches the wire, nor the callback. */
    assert_int_equal(chand_async_ack(s.rx, NULL, 1, NULL, NULL), CHAND_EARG);
    assert_int_equal(chand_async_recv_ack(s.rx, NULL, 0, 0, NULL, NULL),
                     CHAND_EARG);
    assert_true(run_until(&s, &s.send_done, 10000));
    assert_int_equal(s.recv_rc, 1);
    assert_string_equal(s.value, "job");
    assert_int_equal(s.attempt, 1);
    assert_int_equal(s.touch_rc, 0);
    assert_int_equal(s.touch_wait, 10000);
    assert_int_equal(s.steps, 0); /* the send waited for the ack */
    assert_int_equal(s.ack_rc, 0);
    assert_int_equal(s.send_rc, 0);
    {
        int64_t end = testd_now_ms() + 5000;
        while (s.stale_rc == 1 && testd_now_ms() < end)
            run_until(&s, &dead, 20);
    }
    assert_int_equal(s.stale_rc, CHAND_ENOTPENDING);

    /* nack and term asynchronously, on a buffered channel. */
    assert_int_equal(chand_make(c, "a.b", 2, NULL), 0);
    assert_int_equal(chand_send_str(c, "a.b", "n", 1000), 0);
    s.steps = 0;
    assert_int_equal(chand_async_recv_ack(s.rx, "a.b", 0, 5000, a_take_cb, &s),
                     0);
    assert_true(run_until(&s, &s.steps, 5000));
    assert_int_equal(s.recv_rc, 1);
    assert_int_equal(s.attempt, 1);
    dead = 0;
    assert_int_equal(
        chand_async_nack(s.rx, "a.b", s.id, 0, "again", a_rc_cb, &dead), 0);
    assert_true(run_until(&s, &dead, 5000));
    assert_int_equal(dead, 1);
    s.steps = 0;
    assert_int_equal(chand_async_recv_ack(s.rx, "a.b", 0, 5000, a_take_cb, &s),
                     0);
    assert_true(run_until(&s, &s.steps, 5000));
    assert_int_equal(s.attempt, 2);
    dead = 0;
    assert_int_equal(
        chand_async_term(s.rx, "a.b", s.id, "done with it", a_rc_cb, &dead), 0);
    assert_true(run_until(&s, &dead, 5000));
    assert_int_equal(dead, 1);
    expect_len(c, "a.b", 0, 0);
    /* Closed, drained, nothing in flight: rc 0. */
    assert_int_equal(chand_close(c, "a.b"), 0);
    s.steps = 0;
    assert_int_equal(chand_async_recv_ack(s.rx, "a.b", 0, 5000, a_take_cb, &s),
                     0);
    assert_true(run_until(&s, &s.steps, 5000));
    assert_int_equal(s.recv_rc, 0);
    assert_int_equal(s.id, 0);
    event_free(s.timer);
    chand_async_free(s.rx);
    chand_async_free(s.tx);
    event_base_free(s.base);
    e2e_hang_up(c);
}

typedef struct selstate {
    int calls, rc;
    json_t *res;
} selstate;

static void a_keep_cb(chand_async *a, int rc, json_t *res,
                      const chand_error *err, void *arg)
{
    selstate *s = arg;

    (void)a;
    (void)err;
    s->calls++;
    s->rc = rc;
    json_decref(s->res);
    s->res = res ? json_incref(res) : NULL;
}

static void a_wait(struct event_base *base, const selstate *s, int calls)
{
    int64_t end = testd_now_ms() + 5000;

    while (s->calls < calls && testd_now_ms() < end) {
        struct timeval tv = {0, 20 * 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    assert_int_equal(s->calls, calls);
}

static void test_async_select_make(void **state)
{
    chand_conn *c = e2e_dial();
    struct event_base *base = event_base_new();
    chand_chan_opts *o = chand_chan_opts_new();
    chand_case cs[2] = {{.dir = CHAND_RECV_ACK, .name = "y.q"},
                        {.dir = CHAND_RECV, .name = "y.dlq"}};
    chand_async *a = NULL;
    selstate s = {0};
    json_t *d;
    int64_t len, cap, in;

    (void)state;
    assert_non_null(base);
    assert_non_null(o);
    assert_int_equal(
        chand_async_connect(base, "127.0.0.1", D.port, 5000, NULL, NULL, &a),
        0);
    assert_int_equal(chand_chan_opts_max_deliver(o, 1), 0);
    assert_int_equal(chand_chan_opts_dead_letter(o, "y.dlq"), 0);
    assert_int_equal(chand_make(c, "y.dlq", 4, NULL), 0);
    assert_int_equal(chand_async_make_opts(a, "y.q", 4, o, a_keep_cb, &s), 0);
    assert_int_equal(chand_async_make_opts(a, "y.q", -1, o, a_keep_cb, &s),
                     CHAND_EARG);
    a_wait(base, &s, 1);
    assert_int_equal(s.rc, 0);
    assert_int_equal(chand_send_str(c, "y.q", "v", 1000), 0);
    assert_int_equal(
        chand_async_select_ack(a, cs, 2, false, 0, 5000, a_keep_cb, &s), 0);
    a_wait(base, &s, 2);
    assert_int_equal(s.rc, 0);
    assert_int_equal(json_integer_value(json_object_get(s.res, "index")), 0);
    d = json_object_get(s.res, "delivery");
    assert_true(json_integer_value(json_object_get(d, "id")) > 0);
    assert_int_equal(json_integer_value(json_object_get(d, "attempt")), 1);
    assert_int_equal(chand_len_inflight(c, "y.q", &len, &cap, &in), 0);
    assert_int_equal(in, 1);
    /* max_deliver 1: a nack of the only attempt dead-letters it. */
    assert_int_equal(
        chand_async_nack(a, "y.q", json_integer_value(json_object_get(d, "id")),
                         0, "no", a_keep_cb, &s),
        0);
    a_wait(base, &s, 3);
    assert_int_equal(s.rc, 0);
    expect_len(c, "y.dlq", 1, 0);
    cs[1].dir = (chand_dir)9; /* a bad case never reaches the wire */
    assert_int_equal(
        chand_async_select_ack(a, cs, 2, false, 0, 5000, a_keep_cb, &s),
        CHAND_EARG);
    json_decref(s.res);
    chand_chan_opts_free(o);
    chand_async_free(a);
    event_base_free(base);
    e2e_hang_up(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ack_basic, e2e_close_all),
        cmocka_unit_test_teardown(test_nack_order, e2e_close_all),
        cmocka_unit_test_teardown(test_expiry_and_touch, e2e_close_all),
        cmocka_unit_test_teardown(test_session_end, e2e_close_all),
        cmocka_unit_test_teardown(test_dead_letters, e2e_close_all),
        cmocka_unit_test_teardown(test_close_with_inflight, e2e_close_all),
        cmocka_unit_test_teardown(test_select_ack, e2e_close_all),
        cmocka_unit_test_teardown(test_async_unbuffered, e2e_close_all),
        cmocka_unit_test_teardown(test_async_select_make, e2e_close_all),
    };

    return cmocka_run_group_tests_name(
        "client_ack", tests, e2e_client_group_setup, e2e_client_group_teardown);
}
