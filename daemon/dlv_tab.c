/*
 * dlv_tab.c - the id table of acknowledged deliveries: the attempts in
 * flight hashed by id (chained through dlv.hnext), and the issuing of
 * ids.  Its callers in dlv.c hold dlv_mu for every call.
 */
#include "dlv_internal.h"

#include <stdlib.h>
#include <time.h>

static dlv **dlv_tab;
static size_t dlv_nb, dlv_n;
uint64_t dlv__next_id;

static size_t tab_slot(uint64_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 20) & (dlv_nb - 1);
}

static int tab_grow(void)
{
    size_t nb = dlv_nb ? dlv_nb * 2 : 256;
    dlv **t = calloc(nb, sizeof *t);

    if (!t)
        return -1;
    for (size_t i = 0; i < dlv_nb; i++) {
        dlv *d = dlv_tab[i], *next;
        for (; d; d = next) {
            next = d->hnext;
            size_t k =
                (size_t)((d->id * 0x9E3779B97F4A7C15ull) >> 20) & (nb - 1);
            d->hnext = t[k];
            t[k] = d;
        }
    }
    free(dlv_tab);
    dlv_tab = t;
    dlv_nb = nb;
    return 0;
}

int dlv__tab_add(dlv *d)
{
    if (dlv_n >= dlv_nb && tab_grow() != 0 && !dlv_nb)
        return -1;
    size_t k = tab_slot(d->id);
    d->hnext = dlv_tab[k];
    dlv_tab[k] = d;
    dlv_n++;
    return 0;
}

/* Gives d a new id and adds it (dlv_mu held).  0 or -1 (memory). */
int dlv__tab_add_id(dlv *d)
{
    d->id = dlv__id_next();
    if (dlv__tab_add(d) != 0) {
        d->id = 0;
        return -1;
    }
    return 0;
}

dlv *dlv__tab_find(uint64_t id)
{
    if (!dlv_nb)
        return NULL;
    for (dlv *d = dlv_tab[tab_slot(id)]; d; d = d->hnext)
        if (d->id == id)
            return d;
    return NULL;
}

void dlv__tab_del(dlv *d)
{
    dlv **p = &dlv_tab[tab_slot(d->id)];

    for (; *p; p = &(*p)->hnext) {
        if (*p == d) {
            *p = d->hnext;
            dlv_n--;
            return;
        }
    }
}

/* Ids: unique in this run, and above every id of an earlier run as long
 * as fewer than 2048 were issued per millisecond (the wall clock seeds
 * them); below 2^53, so every JSON reader keeps them exact.  With a
 * data_dir the start's token epoch sets the counter first, and in a
 * cluster the leader's term (dlv_id_floor): a clock set back, or another
 * host's clock behind, would give earlier ids again. */
uint64_t dlv__id_next(void)
{
    if (!dlv__next_id) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ms =
            (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        dlv__next_id = (ms << 11) & ((1ull << 53) - 1);
        if (!dlv__next_id)
            dlv__next_id = 1;
    }
    return dlv__next_id++;
}
