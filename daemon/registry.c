/*
 * registry.c - the one namespace of named objects.
 *
 * A chained hash table under one mutex, held only for lookups, inserts and
 * removals (never across a runtime call that can block).  Objects are
 * reference counted: the table holds one reference, every request using an
 * object holds another, so a dropped object lives until its last waiter has
 * been answered.
 */
#include "daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REG_BUCKETS (1u << 16)

static obj *reg_tab[REG_BUCKETS];
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t reg_seq = 1;

static uint32_t reg_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h & (REG_BUCKETS - 1);
}

static obj *reg_find_locked(const char *name, uint32_t h)
{
    for (obj *o = reg_tab[h]; o; o = o->hnext)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

obj *obj_retain(obj *o)
{
    atomic_fetch_add(&o->refs, 1);
    return o;
}

void obj_release(obj *o)
{
    if (!o || atomic_fetch_sub(&o->refs, 1) != 1)
        return;
    if (o->ops->fini)
        o->ops->fini(o);
    pthread_mutex_destroy(&o->wmu);
    free(o->name);
    free(o);
}

static const char *reg_article(const obj_ops *ops)
{
    return ops->type == OBJ_ATOMIC || ops->type == OBJ_ONCE ? "an" : "a";
}

static void reg_fail_type(dreq *r, const char *name, const obj *o,
                          const obj_ops *want)
{
    dreq_fail(r, PROTO_R_WRONG_TYPE, "\"%s\" is %s %s, not %s %s", name,
              reg_article(o->ops), o->ops->name, reg_article(want),
              want->name);
}

/* Makes and inserts a new object (reg_mu held).  Returns it with two
 * references (table + caller), or NULL after failing r. */
static obj *reg_insert_locked(dreq *r, const char *name, uint32_t h,
                              const obj_ops *ops)
{
    obj *o;

    if (atomic_load(&srv_stat.objects) >= srv_conf.max_objects) {
        dreq_fail(r, PROTO_R_LIMIT, "too many objects (max-objects %d)",
                  srv_conf.max_objects);
        return NULL;
    }
    o = calloc(1, ops->size);
    if (!o)
        goto out_oom;
    o->name = strdup(name);
    if (!o->name)
        goto out_free;
    o->ops = ops;
    pthread_mutex_init(&o->wmu, NULL);
    if (ops->init && ops->init(o, r) != 0)
        goto out_mutex;
    o->refs = 2;
    o->hnext = reg_tab[h];
    reg_tab[h] = o;
    atomic_fetch_add(&srv_stat.objects, 1);
    return o;

out_mutex:
    pthread_mutex_destroy(&o->wmu);
    free(o->name);
out_free:
    free(o);
out_oom:
    dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
    return NULL;
}

obj *reg_get(dreq *r, const char *name, const obj_ops *want, bool create)
{
    uint32_t h = reg_hash(name);
    obj *o;

    pthread_mutex_lock(&reg_mu);
    o = reg_find_locked(name, h);
    if (o) {
        if (want && o->ops != want) {
            pthread_mutex_unlock(&reg_mu);
            reg_fail_type(r, name, o, want);
            return NULL;
        }
        obj_retain(o);
        pthread_mutex_unlock(&reg_mu);
        return o;
    }
    if (!create || !want) {
        pthread_mutex_unlock(&reg_mu);
        if (want && want->type == OBJ_CHAN)
            dreq_fail(r, PROTO_R_NOT_FOUND, "no channel \"%s\" (make it "
                      "first)", name);
        else
            dreq_fail(r, PROTO_R_NOT_FOUND, "no object \"%s\"", name);
        return NULL;
    }
    o = reg_insert_locked(r, name, h, want);
    pthread_mutex_unlock(&reg_mu);
    return o;
}

obj *reg_make(dreq *r, const char *name, const obj_ops *ops, bool *created)
{
    uint32_t h = reg_hash(name);
    obj *o;

    *created = false;
    pthread_mutex_lock(&reg_mu);
    o = reg_find_locked(name, h);
    if (o) {
        if (o->ops != ops) {
            pthread_mutex_unlock(&reg_mu);
            reg_fail_type(r, name, o, ops);
            return NULL;
        }
        obj_retain(o);
        pthread_mutex_unlock(&reg_mu);
        return o;
    }
    o = reg_insert_locked(r, name, h, ops);
    pthread_mutex_unlock(&reg_mu);
    if (o)
        *created = true;
    return o;
}

int reg_drop(const char *name)
{
    uint32_t h = reg_hash(name);
    obj **pp, *o = NULL;

    pthread_mutex_lock(&reg_mu);
    for (pp = &reg_tab[h]; *pp; pp = &(*pp)->hnext)
        if (strcmp((*pp)->name, name) == 0) {
            o = *pp;
            *pp = o->hnext;
            o->hnext = NULL;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
    if (!o)
        return -1;
    atomic_store(&o->dropped, true);
    atomic_fetch_sub(&srv_stat.objects, 1);
    if (o->ops->drop)
        o->ops->drop(o);
    obj_release(o);
    return 0;
}

void reg_foreach(const char *prefix, void (*fn)(obj *o, void *arg),
                 void *arg)
{
    size_t n = 0, cap = 64, plen = prefix ? strlen(prefix) : 0;
    obj **v = malloc(cap * sizeof *v);

    if (!v)
        return;
    /* Collect under the lock, call without it: fn may take object locks. */
    pthread_mutex_lock(&reg_mu);
    for (uint32_t b = 0; b < REG_BUCKETS; b++)
        for (obj *o = reg_tab[b]; o; o = o->hnext) {
            if (plen && strncmp(o->name, prefix, plen) != 0)
                continue;
            if (n == cap) {
                obj **nv = realloc(v, 2 * cap * sizeof *v);
                if (!nv)
                    goto out_unlock;
                v = nv;
                cap *= 2;
            }
            v[n++] = obj_retain(o);
        }
out_unlock:
    pthread_mutex_unlock(&reg_mu);
    for (size_t i = 0; i < n; i++) {
        fn(v[i], arg);
        obj_release(v[i]);
    }
    free(v);
}

void reg_unique_name(const char *prefix, char *buf, size_t len)
{
    snprintf(buf, len, "%s.%llu", prefix,
             (unsigned long long)atomic_fetch_add(&reg_seq, 1));
}
