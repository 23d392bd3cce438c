/*
 * session_hold.c - a cluster leader's snapshot hold on its sessions'
 * input: while persist_holding() says so, a session's next request waits
 * (framing.c asks sess__held before each line), and its I/O thread lets
 * every waiting session go on when the hold ends -- woken by the
 * snapshot (persist__wake), or by its timer at the hold's deadline.
 * I/O thread of the session, always.
 */
#include "server.h"
#include "persist.h"

#include <event2/event.h>

/* Arms io's timer for the hold's remaining left ms (and 1 ms more: the
 * raft thread counts whole milliseconds), a second at most: a hold that
 * lasts a snapshot's walk has no deadline, and ends by a wake. */
static void sess_hold_arm(srv_io *io, int64_t left)
{
    if (left > 1000)
        left = 1000;
    struct timeval tv = {(time_t)(left / 1000),
                         (suseconds_t)((left % 1000) * 1000 + 1000)};

    evtimer_add(io->ev_hold, &tv);
}

bool sess__held(sess *s)
{
    srv_io *io = s->io;
    int64_t left = persist_holding();

    if (left == 0)
        return false;
    s->held = true;
    if (!io->holding) {
        io->holding = true;
        sess_hold_arm(io, left);
    }
    return true;
}

static bool sess_go_on(sess *s, void *arg)
{
    (void)arg;
    if (s->held) {
        s->held = false;
        if (!s->ended)
            event_active(s->ev_more, EV_READ, 0);
    }
    return true;
}

void sess__hold_over(srv_io *io)
{
    int64_t left;

    if (!io->holding)
        return;
    if ((left = persist_holding()) > 0) {
        sess_hold_arm(io, left);
        return;
    }
    io->holding = false;
    evtimer_del(io->ev_hold);
    sess__each(io, sess_go_on, NULL);
}

void sess__hold_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sess__hold_over(arg);
}
