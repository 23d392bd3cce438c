/*
 * jcheck.c - the checker of tests/cluster (jcheck.h): records a run's
 * operations under one lock, then checks the five properties.
 */
#include "jcheck.h"
#include "jcheck_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct jc_op {
    int64_t v;
    int outcome;
} jc_op;

/* An add or a read with its times (-1: untimed). */
typedef struct jc_timed {
    int64_t v;
    int outcome;
    int64_t sent, done;
} jc_timed;

typedef struct jc_holdrec {
    int64_t sent, acked, end, token;
} jc_holdrec;

struct jc_hist {
    pthread_mutex_t mu;
    jc_vec sends, recvs, queued, holds, adds, reads;
    int64_t atomic;
    int have_atomic;
    int oom; /* a record was lost to malloc: the check cannot be trusted */
};

int jc__vec_push(jc_vec *v, const void *e)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        void *p = realloc(v->p, cap * v->sz);
        if (!p)
            return -1;
        v->p = p;
        v->cap = cap;
    }
    memcpy((char *)v->p + v->n++ * v->sz, e, v->sz);
    return 0;
}

static void vec_push(jc_hist *h, jc_vec *v, const void *e)
{
    if (jc__vec_push(v, e) != 0)
        h->oom = 1;
}

jc_hist *jc_new(void)
{
    jc_hist *h = calloc(1, sizeof *h);

    if (!h)
        return NULL;
    pthread_mutex_init(&h->mu, NULL);
    h->sends.sz = h->recvs.sz = h->queued.sz = sizeof(jc_op);
    h->adds.sz = h->reads.sz = sizeof(jc_timed);
    h->holds.sz = sizeof(jc_holdrec);
    return h;
}

void jc_free(jc_hist *h)
{
    if (!h)
        return;
    free(h->sends.p);
    free(h->recvs.p);
    free(h->queued.p);
    free(h->holds.p);
    free(h->adds.p);
    free(h->reads.p);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

static void record(jc_hist *h, jc_vec *v, int64_t val, int outcome)
{
    jc_op op = {val, outcome};

    pthread_mutex_lock(&h->mu);
    vec_push(h, v, &op);
    pthread_mutex_unlock(&h->mu);
}

void jc_send(jc_hist *h, int64_t v, int outcome)
{
    record(h, &h->sends, v, outcome);
}

void jc_recv(jc_hist *h, int64_t v, int outcome)
{
    record(h, &h->recvs, v, outcome);
}

void jc_queued(jc_hist *h, int64_t v)
{
    record(h, &h->queued, v, JC_OK);
}

static void record_timed(jc_hist *h, jc_vec *v, int64_t val, int outcome,
                         int64_t sent, int64_t done)
{
    jc_timed t = {val, outcome, sent, done};

    pthread_mutex_lock(&h->mu);
    vec_push(h, v, &t);
    pthread_mutex_unlock(&h->mu);
}

void jc_add(jc_hist *h, int64_t delta, int outcome)
{
    record_timed(h, &h->adds, delta, outcome, -1, -1);
}

void jc_add_at(jc_hist *h, int64_t delta, int outcome, int64_t sent,
               int64_t done)
{
    record_timed(h, &h->adds, delta, outcome, sent, done);
}

void jc_read(jc_hist *h, int64_t sent, int64_t done, int64_t v)
{
    record_timed(h, &h->reads, v, JC_OK, sent, done);
}

void jc_hold(jc_hist *h, int64_t lock_sent, int64_t acked, int64_t unlock_sent,
             int64_t lease_ms, int64_t token)
{
    /* The part of the hold that surely was one: from the grant's answer
     * to the unlock's sending, cut at the lease's end counted from before
     * the grant (the server's lease started later, so it ended later). */
    jc_holdrec r = {lock_sent, acked, unlock_sent, token};

    if (lease_ms > 0 && (r.end < 0 || r.end > lock_sent + lease_ms))
        r.end = lock_sent + lease_ms;
    if (r.end < 0) /* no lease, never unlocked: held until its session
                    * ended, which the client cannot time; count none */
        r.end = acked;
    pthread_mutex_lock(&h->mu);
    vec_push(h, &h->holds, &r);
    pthread_mutex_unlock(&h->mu);
}

void jc_final_atomic(jc_hist *h, int64_t v)
{
    pthread_mutex_lock(&h->mu);
    h->atomic = v;
    h->have_atomic = 1;
    pthread_mutex_unlock(&h->mu);
}

static int cmp_op(const void *a, const void *b)
{
    int64_t x = ((const jc_op *)a)->v, y = ((const jc_op *)b)->v;

    return x < y ? -1 : x > y;
}

static int cmp_hold_acked(const void *a, const void *b)
{
    int64_t x = ((const jc_holdrec *)a)->acked,
            y = ((const jc_holdrec *)b)->acked;

    return x < y ? -1 : x > y;
}

/* Sends against receives and the queue. */
static int check_queue(jc_hist *h, FILE *report)
{
    size_t ns = h->sends.n, nseen = h->recvs.n + h->queued.n, unknown_recv = 0;
    jc_op *s = h->sends.p, *seen = malloc((nseen ? nseen : 1) * sizeof *seen);
    int dup = 0, lost = 0, ghost = 0;
    size_t missing = 0, i, j;

    if (!seen)
        return -1;
    j = 0;
    for (i = 0; i < h->recvs.n; i++) {
        jc_op *r = &((jc_op *)h->recvs.p)[i];
        if (r->outcome == JC_OK)
            seen[j++] = *r;
        else if (r->outcome == JC_UNKNOWN)
            unknown_recv++;
    }
    for (i = 0; i < h->queued.n; i++)
        seen[j++] = ((jc_op *)h->queued.p)[i];
    nseen = j;
    if (ns > 1) /* qsort wants a real pointer even for no elements */
        qsort(s, ns, sizeof *s, cmp_op);
    if (nseen > 1)
        qsort(seen, nseen, sizeof *seen, cmp_op);
    for (i = 1; i < nseen; i++)
        if (seen[i].v == seen[i - 1].v)
            JC_SAY(dup, "violation: value %lld received/queued twice\n",
                   (long long)seen[i].v);
    /* Walk both sorted lists. */
    for (i = 0, j = 0; i < ns; i++) {
        while (j < nseen && seen[j].v < s[i].v) {
            JC_SAY(ghost, "violation: value %lld received but never sent\n",
                   (long long)seen[j].v);
            j++;
        }
        if (j < nseen && seen[j].v == s[i].v) {
            if (s[i].outcome == JC_FAIL)
                JC_SAY(ghost,
                       "violation: value %lld received but its send "
                       "failed\n",
                       (long long)s[i].v);
            while (j < nseen && seen[j].v == s[i].v)
                j++;
        } else if (s[i].outcome == JC_OK) {
            missing++;
        }
    }
    for (; j < nseen; j++)
        JC_SAY(ghost, "violation: value %lld received but never sent\n",
               (long long)seen[j].v);
    /* An unanswered receive may have taken one value each. */
    if (missing > unknown_recv)
        JC_SAY(lost,
               "violation: %zu acknowledged sends neither received nor "
               "queued (%zu receives unanswered could explain %zu)\n",
               missing, unknown_recv, unknown_recv);
    if (report)
        fprintf(report,
                "check: sends %zu (acked %zu missing, %zu unanswered "
                "receives), seen %zu\n",
                ns, missing, unknown_recv, nseen);
    free(seen);
    return dup + lost + ghost;
}

/* Lock holds: no overlap; tokens grow in real-time order. */
static int check_locks(jc_hist *h, FILE *report)
{
    jc_holdrec *r = h->holds.p;
    size_t n = h->holds.n;
    int overlap = 0, order = 0;

    if (n > 1)
        qsort(r, n, sizeof *r, cmp_hold_acked);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n && r[j].acked < r[i].end; j++)
            JC_SAY(overlap,
                   "violation: holds overlap: token %lld held %lld..%lld, "
                   "token %lld granted at %lld\n",
                   (long long)r[i].token, (long long)r[i].acked,
                   (long long)r[i].end, (long long)r[j].token,
                   (long long)r[j].acked);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (i != j &&
                (r[i].token == r[j].token
                     ? i < j
                     : r[i].acked < r[j].sent && r[i].token > r[j].token))
                JC_SAY(order,
                       "violation: token %lld granted before token %lld "
                       "was asked for\n",
                       (long long)r[i].token, (long long)r[j].token);
    if (report)
        fprintf(report, "check: lock holds %zu\n", n);
    return overlap + order;
}

/* The atomic against the adds. */
static int check_atomic(jc_hist *h, FILE *report)
{
    int64_t acked = 0, maybe = 0;
    int bad = 0;

    for (size_t i = 0; i < h->adds.n; i++) {
        jc_timed *a = &((jc_timed *)h->adds.p)[i];
        if (a->outcome == JC_OK)
            acked += a->v;
        else if (a->outcome == JC_UNKNOWN)
            maybe += a->v;
    }
    if (!h->have_atomic) {
        if (h->adds.n)
            JC_SAY(bad, "violation: the atomic was never read back\n");
    } else if (h->atomic < acked || h->atomic > acked + maybe) {
        JC_SAY(bad,
               "violation: atomic is %lld; acknowledged adds sum to %lld "
               "(plus up to %lld unanswered)\n",
               (long long)h->atomic, (long long)acked, (long long)maybe);
    }
    if (report)
        fprintf(report,
                "check: atomic %lld, acked adds %lld, unanswered %lld\n",
                (long long)h->atomic, (long long)acked, (long long)maybe);
    return bad;
}

/* A time and the sum (or maximum) of the values at or before it. */
typedef struct jc_point {
    int64_t t, acc;
} jc_point;

static int cmp_point(const void *a, const void *b)
{
    int64_t x = ((const jc_point *)a)->t, y = ((const jc_point *)b)->t;

    return x < y ? -1 : x > y;
}

/* acc of the last point with t < before (t <= before when or_at), else 0. */
static int64_t acc_before(const jc_point *p, size_t n, int64_t before,
                          int or_at)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p[mid].t < before || (or_at && p[mid].t == before))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? p[lo - 1].acc : 0;
}

/* Sorts p by time and turns its values into running sums (or maxima). */
static void accumulate(jc_point *p, size_t n, int max)
{
    if (n > 1)
        qsort(p, n, sizeof *p, cmp_point);
    for (size_t i = 1; i < n; i++)
        p[i].acc = max ? (p[i].acc > p[i - 1].acc ? p[i].acc : p[i - 1].acc)
                       : p[i].acc + p[i - 1].acc;
}

/* Reads of the atomic against the adds, with each operation's times. */
static int check_reads(jc_hist *h, FILE *report)
{
    size_t na = h->adds.n, nr = h->reads.n, nd = 0, ns = 0;
    jc_timed *a = h->adds.p, *r = h->reads.p;
    jc_point *done, *sent, *rdone;
    int stale = 0, future = 0, back = 0;

    for (size_t i = 0; i < na; i++)
        if (a[i].sent < 0)
            nr = 0; /* untimed adds: reads cannot be placed */
    if (nr == 0)
        return 0;
    done = malloc((na ? na : 1) * sizeof *done);
    sent = malloc((na ? na : 1) * sizeof *sent);
    rdone = malloc(nr * sizeof *rdone);
    if (!done || !sent || !rdone) {
        free(done);
        free(sent);
        free(rdone);
        return -1;
    }
    for (size_t i = 0; i < na; i++) {
        if (a[i].outcome == JC_OK)
            done[nd++] = (jc_point){a[i].done, a[i].v};
        if (a[i].outcome != JC_FAIL)
            sent[ns++] = (jc_point){a[i].sent, a[i].v};
    }
    for (size_t i = 0; i < nr; i++)
        rdone[i] = (jc_point){r[i].done, r[i].v};
    accumulate(done, nd, 0);
    accumulate(sent, ns, 0);
    accumulate(rdone, nr, 1);
    for (size_t i = 0; i < nr; i++) {
        int64_t low = acc_before(done, nd, r[i].sent, 0),
                high = acc_before(sent, ns, r[i].done, 1),
                prev = acc_before(rdone, nr, r[i].sent, 0);
        if (r[i].v < low)
            JC_SAY(stale,
                   "violation: a read sent at %lld answered %lld; adds "
                   "acknowledged before it sum to %lld\n",
                   (long long)r[i].sent, (long long)r[i].v, (long long)low);
        if (r[i].v > high)
            JC_SAY(future,
                   "violation: a read answered at %lld saw %lld; adds sent "
                   "by then sum to %lld\n",
                   (long long)r[i].done, (long long)r[i].v, (long long)high);
        if (r[i].v < prev)
            JC_SAY(back,
                   "violation: a read sent at %lld answered %lld; a read "
                   "answered before it saw %lld\n",
                   (long long)r[i].sent, (long long)r[i].v, (long long)prev);
    }
    if (report)
        fprintf(report, "check: atomic reads %zu\n", nr);
    free(done);
    free(sent);
    free(rdone);
    return stale + future + back;
}

int jc_check(jc_hist *h, FILE *report)
{
    int q, l, a, r;

    pthread_mutex_lock(&h->mu);
    q = check_queue(h, report);
    l = check_locks(h, report);
    a = check_atomic(h, report);
    r = check_reads(h, report);
    pthread_mutex_unlock(&h->mu);
    if (q < 0 || r < 0 || h->oom)
        return -1;
    if (report)
        fprintf(report,
                "check: %d violations (queue %d, locks %d, atomic %d, "
                "reads %d)\n",
                q + l + a + r, q, l, a, r);
    return q + l + a + r;
}
