/*
 * jcheck_ack.c - the acknowledged-delivery checker of tests/cluster
 * (jcheck_ack.h): records sends, deliveries and acks under one lock, then
 * checks the five properties.
 */
#include "jcheck.h"
#include "jcheck_ack.h"
#include "jcheck_internal.h"

#include <pthread.h>
#include <stdlib.h>

/* Every record begins with its value (cmp_v, find_v). */
typedef struct jca_send_rec {
    int64_t v, sent, done;
    int outcome;
} jca_send_rec;

typedef struct jca_dlv_rec {
    int64_t v, id, sent, done;
} jca_dlv_rec;

typedef jca_ack_info jca_ack_rec;

struct jca_hist {
    pthread_mutex_t mu;
    jc_vec sends, dlvs, acks;
    int64_t stop; /* jca_stop's time (INT64_MAX: never) */
    int oom;      /* a record was lost to malloc: the check cannot be trusted */
};

jca_hist *jca_new(void)
{
    jca_hist *h = calloc(1, sizeof *h);

    if (!h)
        return NULL;
    pthread_mutex_init(&h->mu, NULL);
    h->stop = INT64_MAX;
    h->sends.sz = sizeof(jca_send_rec);
    h->dlvs.sz = sizeof(jca_dlv_rec);
    h->acks.sz = sizeof(jca_ack_rec);
    return h;
}

void jca_free(jca_hist *h)
{
    if (!h)
        return;
    free(h->sends.p);
    free(h->dlvs.p);
    free(h->acks.p);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

static void push(jca_hist *h, jc_vec *v, const void *e)
{
    pthread_mutex_lock(&h->mu);
    if (jc__vec_push(v, e) != 0)
        h->oom = 1;
    pthread_mutex_unlock(&h->mu);
}

void jca_send(jca_hist *h, int64_t v, int outcome, int64_t sent, int64_t done)
{
    jca_send_rec r = {v, sent, done, outcome};
    push(h, &h->sends, &r);
}

void jca_deliver(jca_hist *h, int64_t v, int64_t id, int64_t sent, int64_t done)
{
    jca_dlv_rec r = {v, id, sent, done};
    push(h, &h->dlvs, &r);
}

void jca_ack(jca_hist *h, const jca_ack_info *a)
{
    push(h, &h->acks, a);
}

void jca_stop(jca_hist *h, int64_t t)
{
    pthread_mutex_lock(&h->mu);
    h->stop = t;
    pthread_mutex_unlock(&h->mu);
}

/* Orders by value (the first member of every record here). */
static int cmp_v(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* Orders acks by delivery id, then by when they were sent. */
static int cmp_id_sent(const void *a, const void *b)
{
    const jca_ack_rec *x = a, *y = b;

    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->sent < y->sent ? -1 : x->sent > y->sent;
}

/* Orders deliveries by id. */
static int cmp_dlv_id(const void *a, const void *b)
{
    const jca_dlv_rec *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

/* Orders deliveries by value, then by when their recv was sent. */
static int cmp_v_sent(const void *a, const void *b)
{
    const jca_dlv_rec *x = a, *y = b;

    if (x->v != y->v)
        return x->v < y->v ? -1 : 1;
    return x->sent < y->sent ? -1 : x->sent > y->sent;
}

/* True when acks a (n, in id order) hold one of delivery id. */
static bool has_ack(const jca_ack_rec *a, size_t n, int64_t id)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && a[lo].id == id;
}

/* The index of the first record of sorted base (n of size sz, value
 * first) whose value is v, or n. */
static size_t find_v(const void *base, size_t n, size_t sz, int64_t v)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (*(const int64_t *)((const char *)base + mid * sz) < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && *(const int64_t *)((const char *)base + lo * sz) == v ? lo
                                                                           : n;
}

static const char *const outcome_name[] = {"ok", "failed", "unknown"};

/* Writes what happened to value v (sorted s, d, a) to report, for a
 * violation's reader. */
static void tell(FILE *report, int64_t v, const jca_send_rec *s, size_t ns,
                 const jca_dlv_rec *d, size_t nd, const jca_ack_rec *a,
                 size_t na)
{
    if (!report)
        return;
    for (size_t k = find_v(s, ns, sizeof *s, v); k < ns && s[k].v == v; k++)
        fprintf(report, "  %lld: send %lld..%lld %s\n", (long long)v,
                (long long)s[k].sent, (long long)s[k].done,
                outcome_name[s[k].outcome]);
    for (size_t k = find_v(d, nd, sizeof *d, v); k < nd && d[k].v == v; k++)
        fprintf(report, "  %lld: delivery %lld, recv %lld..%lld\n",
                (long long)v, (long long)d[k].id, (long long)d[k].sent,
                (long long)d[k].done);
    for (size_t k = find_v(a, na, sizeof *a, v); k < na && a[k].v == v; k++)
        fprintf(report, "  %lld: ack of %lld %lld..%lld %s (code %d)\n",
                (long long)v, (long long)a[k].id, (long long)a[k].sent,
                (long long)a[k].done, outcome_name[a[k].outcome], a[k].code);
}

int jca_check(jca_hist *h, int64_t ack_wait_ms, FILE *report)
{
    int lost = 0, ghost = 0, twice = 0, after = 0, deadline = 0, early = 0;
    int reused = 0;
    size_t ns, nd, na, redelivered = 0, acked_ok = 0;
    jca_send_rec *s;
    jca_dlv_rec *d;
    jca_ack_rec *a;

    pthread_mutex_lock(&h->mu);
    ns = h->sends.n, nd = h->dlvs.n, na = h->acks.n;
    s = h->sends.p, d = h->dlvs.p, a = h->acks.p;
    if (h->oom) {
        pthread_mutex_unlock(&h->mu);
        return -1;
    }

    /* Deadlines first: they need the acks in id order. */
    if (na > 1)
        qsort(a, na, sizeof *a, cmp_id_sent);
    for (size_t i = 0; i < na; i++) {
        bool unanswered_before = false;
        for (size_t j = i; j > 0 && a[j - 1].id == a[i].id; j--)
            if (a[j - 1].outcome == JC_UNKNOWN)
                unanswered_before = true;
        if (a[i].not_pending && !unanswered_before &&
            a[i].done < a[i].recv_sent + ack_wait_ms)
            JC_SAY(deadline,
                   "violation: delivery %lld of value %lld: ack answered "
                   "not_pending %lld ms after its recv was sent (ack_wait "
                   "%lld ms)\n",
                   (long long)a[i].id, (long long)a[i].v,
                   (long long)(a[i].done - a[i].recv_sent),
                   (long long)ack_wait_ms);
    }

    /* An id names one attempt in the whole cluster: given twice, an ack
     * meant for one delivery can end the other (a new leader reissued its
     * predecessor's ids, and a worker's retried ack lost a value). */
    if (nd > 1)
        qsort(d, nd, sizeof *d, cmp_dlv_id);
    for (size_t i = 1; i < nd; i++)
        if (d[i].id == d[i - 1].id)
            JC_SAY(reused,
                   "violation: delivery id %lld given twice: to value %lld "
                   "(recv sent at %lld) and value %lld (recv sent at %lld)\n",
                   (long long)d[i].id, (long long)d[i - 1].v,
                   (long long)d[i - 1].sent, (long long)d[i].v,
                   (long long)d[i].sent);

    /* A delivery nobody acked (abandoned) comes back at its deadline, not
     * before: the next one of its value cannot be answered before its
     * recv was sent plus the wait.  (A delivery whose recv got no answer
     * is not recorded; it was made after this one's deadline, if that
     * held, so the next recorded one is later still.) */
    if (nd > 1)
        qsort(d, nd, sizeof *d, cmp_v_sent);
    for (size_t i = 1; i < nd; i++)
        if (d[i].v == d[i - 1].v && !has_ack(a, na, d[i - 1].id) &&
            d[i].done < d[i - 1].sent + ack_wait_ms && d[i].done < h->stop)
            JC_SAY(early,
                   "violation: value %lld: delivery %lld (recv sent at "
                   "%lld) never acked, and delivered again %lld ms later "
                   "(ack_wait %lld ms)\n",
                   (long long)d[i].v, (long long)d[i - 1].id,
                   (long long)d[i - 1].sent,
                   (long long)(d[i].done - d[i - 1].sent),
                   (long long)ack_wait_ms);

    if (ns > 1)
        qsort(s, ns, sizeof *s, cmp_v);
    if (na > 1)
        qsort(a, na, sizeof *a, cmp_v);

    /* Per value: acks that succeeded, and deliveries after the first. */
    for (size_t i = 0; i < na;) {
        size_t j = i, ok = 0;
        int64_t first_done = INT64_MAX;
        for (; j < na && a[j].v == a[i].v; j++)
            if (a[j].outcome == JC_OK) {
                ok++;
                if (a[j].done < first_done)
                    first_done = a[j].done;
            }
        acked_ok += ok > 0;
        if (ok > 1)
            JC_SAY(twice, "violation: value %lld acknowledged %zu times\n",
                   (long long)a[i].v, ok);
        for (size_t k = find_v(d, nd, sizeof *d, a[i].v);
             k < nd && d[k].v == a[i].v; k++)
            if (d[k].sent > first_done)
                JC_SAY(after,
                       "violation: value %lld delivered again (recv sent "
                       "at %lld) after its ack was answered at %lld\n",
                       (long long)a[i].v, (long long)d[k].sent,
                       (long long)first_done);
        i = j;
    }

    /* Every delivery was sent, and not refused. */
    for (size_t i = 0; i < nd; i++) {
        size_t k = find_v(s, ns, sizeof *s, d[i].v);
        if (i > 0 && d[i].v == d[i - 1].v) {
            redelivered++;
            continue;
        }
        if (k == ns)
            JC_SAY(ghost, "violation: value %lld delivered but never sent\n",
                   (long long)d[i].v);
        else if (s[k].outcome == JC_FAIL)
            JC_SAY(ghost,
                   "violation: value %lld delivered but its send failed\n",
                   (long long)d[i].v);
    }

    /* Every acknowledged send was acknowledged, or may have been. */
    for (size_t i = 0; i < ns; i++) {
        bool done = false;
        if (s[i].outcome != JC_OK)
            continue;
        for (size_t k = find_v(a, na, sizeof *a, s[i].v);
             k < na && a[k].v == s[i].v && !done; k++)
            done = a[k].outcome != JC_FAIL;
        if (!done) {
            if (lost < 5)
                tell(report, s[i].v, s, ns, d, nd, a, na);
            JC_SAY(lost,
                   "violation: value %lld: send acknowledged, never "
                   "acknowledged by a worker nor drained\n",
                   (long long)s[i].v);
        }
    }
    pthread_mutex_unlock(&h->mu);
    if (report) {
        fprintf(report,
                "check: ack: sends %zu, deliveries %zu (%zu again), values "
                "acknowledged %zu, acks %zu\n",
                ns, nd, redelivered, acked_ok, na);
        fprintf(report,
                "check: ack: %d violations (lost %d, invented %d, acked "
                "twice %d, delivered after ack %d, deadline %d, early %d, "
                "id reused %d)\n",
                lost + ghost + twice + after + deadline + early + reused, lost,
                ghost, twice, after, deadline, early, reused);
    }
    return lost + ghost + twice + after + deadline + early + reused;
}
