/*
 * acl.c - rules PERMS:PREFIX, the method -> permission table, and the
 * checks the dispatcher makes (see acl.h for the model).
 *
 * The table below is the one for PROTOCOL.md's "Permissions" section:
 *
 *   method                      needs
 *   hello, auth, ping           nothing (also before authentication)
 *   make, send, recv, close     w on name
 *   len                         r on name
 *   drop                        a on name
 *   list                        nothing; shows only names with r
 *   select                      w on every case's name (send and recv)
 *   mutex.*, rwmutex.*          l on name
 *   cond.wait                   l on name and l on mutex
 *   cond.signal/broadcast       l on name
 *   wg.add, wg.done, wg.wait    l on name
 *   once.do, once.done          l on name
 *   pool.put, pool.get          w on name
 *   map.load, map.range,        r on name
 *   map.len
 *   map.store, map.delete,      w on name
 *   map.load_or_store, map.load_and_delete, map.swap,
 *   map.compare_and_swap, map.compare_and_delete, map.clear
 *   atomic.load                 r on name
 *   atomic.store, atomic.add,   w on name
 *   atomic.swap, atomic.compare_and_swap
 *   timer.after, timer.ticker,  w on name
 *   timer.stop, timer.reset
 *   timer.afterfunc             w on "afterfunc." (the name it makes) and
 *                               the nested request, checked when made
 *   go                          the nested request, checked when made
 *   runtime.stats               r in some rule
 *   runtime.gomaxprocs          with n: a on *; without: r in some rule
 *   runtime.dump                nothing; shows only names with r
 *   cluster.status              r in some rule
 *   cluster.add/remove/transfer a on *
 *
 * Methods that other issues announce (ack, nack, touch, term, the lease
 * renewals) have their entries already, so that adding them to proto's
 * table needs no change here.
 */
#include "acl.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACL_NEST_MAX 8

static const acl_method acl_table[] = {
    {"hello", ACL_K_OPEN, 0, NULL},
    {"auth", ACL_K_OPEN, 0, NULL},
    {"ping", ACL_K_OPEN, 0, NULL},
    /* channels */
    {"make", ACL_K_NAME, ACL_W, NULL},
    {"send", ACL_K_NAME, ACL_W, NULL},
    {"recv", ACL_K_NAME, ACL_W, NULL},
    {"close", ACL_K_NAME, ACL_W, NULL},
    {"len", ACL_K_NAME, ACL_R, NULL},
    {"drop", ACL_K_NAME, ACL_A, NULL},
    {"list", ACL_K_FILTER, 0, NULL},
    {"select", ACL_K_SELECT, ACL_W, NULL},
    /* acknowledged delivery (announced) */
    {"ack", ACL_K_NAME, ACL_W, NULL},
    {"nack", ACL_K_NAME, ACL_W, NULL},
    {"touch", ACL_K_NAME, ACL_W, NULL},
    {"term", ACL_K_NAME, ACL_W, NULL},
    /* locks */
    {"mutex.lock", ACL_K_NAME, ACL_L, NULL},
    {"mutex.unlock", ACL_K_NAME, ACL_L, NULL},
    {"mutex.renew", ACL_K_NAME, ACL_L, NULL},
    {"rwmutex.lock", ACL_K_NAME, ACL_L, NULL},
    {"rwmutex.unlock", ACL_K_NAME, ACL_L, NULL},
    {"rwmutex.rlock", ACL_K_NAME, ACL_L, NULL},
    {"rwmutex.runlock", ACL_K_NAME, ACL_L, NULL},
    {"rwmutex.renew", ACL_K_NAME, ACL_L, NULL},
    {"cond.wait", ACL_K_NAME, ACL_L, "mutex"},
    {"cond.signal", ACL_K_NAME, ACL_L, NULL},
    {"cond.broadcast", ACL_K_NAME, ACL_L, NULL},
    /* WaitGroup, Once, Pool */
    {"wg.add", ACL_K_NAME, ACL_L, NULL},
    {"wg.done", ACL_K_NAME, ACL_L, NULL},
    {"wg.wait", ACL_K_NAME, ACL_L, NULL},
    {"once.do", ACL_K_NAME, ACL_L, NULL},
    {"once.done", ACL_K_NAME, ACL_L, NULL},
    {"pool.put", ACL_K_NAME, ACL_W, NULL},
    {"pool.get", ACL_K_NAME, ACL_W, NULL},
    /* sync.Map */
    {"map.store", ACL_K_NAME, ACL_W, NULL},
    {"map.load", ACL_K_NAME, ACL_R, NULL},
    {"map.delete", ACL_K_NAME, ACL_W, NULL},
    {"map.load_or_store", ACL_K_NAME, ACL_W, NULL},
    {"map.load_and_delete", ACL_K_NAME, ACL_W, NULL},
    {"map.swap", ACL_K_NAME, ACL_W, NULL},
    {"map.compare_and_swap", ACL_K_NAME, ACL_W, NULL},
    {"map.compare_and_delete", ACL_K_NAME, ACL_W, NULL},
    {"map.range", ACL_K_NAME, ACL_R, NULL},
    {"map.len", ACL_K_NAME, ACL_R, NULL},
    {"map.clear", ACL_K_NAME, ACL_W, NULL},
    /* sync/atomic */
    {"atomic.load", ACL_K_NAME, ACL_R, NULL},
    {"atomic.store", ACL_K_NAME, ACL_W, NULL},
    {"atomic.add", ACL_K_NAME, ACL_W, NULL},
    {"atomic.swap", ACL_K_NAME, ACL_W, NULL},
    {"atomic.compare_and_swap", ACL_K_NAME, ACL_W, NULL},
    /* time */
    {"timer.after", ACL_K_NAME, ACL_W, NULL},
    {"timer.ticker", ACL_K_NAME, ACL_W, NULL},
    {"timer.stop", ACL_K_NAME, ACL_W, NULL},
    {"timer.reset", ACL_K_NAME, ACL_W, NULL},
    {"timer.afterfunc", ACL_K_NESTED, ACL_W, "afterfunc."},
    /* goroutines and the runtime */
    {"go", ACL_K_NESTED, 0, NULL},
    {"runtime.stats", ACL_K_SERVER, ACL_R, NULL},
    /* name2 of a server method: the parameter that makes it an admin
     * request (a on every name). */
    {"runtime.gomaxprocs", ACL_K_SERVER, ACL_R, "n"},
    {"runtime.dump", ACL_K_FILTER, 0, NULL},
    /* replication: membership changes are admin requests (their id
     * parameter is required, so name2 always makes them one) */
    {"cluster.status", ACL_K_SERVER, ACL_R, NULL},
    {"cluster.add", ACL_K_SERVER, ACL_R, "id"},
    {"cluster.remove", ACL_K_SERVER, ACL_R, "id"},
    {"cluster.transfer", ACL_K_SERVER, ACL_R, "id"},
};

#define ACL_NTABLE (sizeof acl_table / sizeof acl_table[0])
#define ACL_MAX_IDS 256

/* acl_table entries by proto method id, built once from proto's table. */
static const acl_method *acl_by_id[ACL_MAX_IDS];
static pthread_once_t acl_once = PTHREAD_ONCE_INIT;

static void acl_index(void)
{
    size_t n;
    const proto_method *pm = proto_methods(&n);

    for (size_t i = 0; i < n; i++)
        if (pm[i].id >= 0 && pm[i].id < ACL_MAX_IDS)
            acl_by_id[pm[i].id] = acl_method_named(pm[i].name);
}

const acl_method *acl_methods(size_t *n)
{
    if (n)
        *n = ACL_NTABLE;
    return acl_table;
}

const acl_method *acl_method_named(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < ACL_NTABLE; i++)
        if (strcmp(acl_table[i].method, name) == 0)
            return &acl_table[i];
    return NULL;
}

const acl_method *acl_method_of(const proto_method *m)
{
    if (!m)
        return NULL;
    pthread_once(&acl_once, acl_index);
    if (m->id >= 0 && m->id < ACL_MAX_IDS && acl_by_id[m->id] &&
        strcmp(acl_by_id[m->id]->method, m->name) == 0)
        return acl_by_id[m->id];
    return acl_method_named(m->name);
}

bool acl_method_open(const proto_method *m)
{
    const acl_method *e = acl_method_of(m);
    return e && e->kind == ACL_K_OPEN;
}

char *acl_perms_str(unsigned perms, char *buf)
{
    char *p = buf;
    if (perms & ACL_R)
        *p++ = 'r';
    if (perms & ACL_W)
        *p++ = 'w';
    if (perms & ACL_L)
        *p++ = 'l';
    if (perms & ACL_A)
        *p++ = 'a';
    *p = '\0';
    return buf;
}

/* ------------------------------------------------------------------ */
/* Rules                                                              */
/* ------------------------------------------------------------------ */

/* Control characters from a hostile file or request must never reach a
 * log line or a terminal through an error message. */
const char *acl_shown(const char *s, size_t len, char *out, size_t outlen)
{
    size_t i, n = len < 64 ? len : 64;
    if (n + 4 > outlen)
        n = outlen > 4 ? outlen - 4 : 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (n < len)
        memcpy(out + i, "...", 3), i += 3;
    out[i] = '\0';
    return out;
}

int acl_rule_parse(const char *tok, size_t len, acl_rule *out, char *err,
                   size_t errlen)
{
    const char *colon = memchr(tok, ':', len);
    const char *pfx;
    size_t plen;
    unsigned perms = 0;
    char shown[80];

    memset(out, 0, sizeof *out);
    acl_shown(tok, len, shown, sizeof shown);
    if (!colon) {
        snprintf(err, errlen, "rule \"%s\" is not PERMS:PREFIX", shown);
        return -EINVAL;
    }
    if (colon == tok) {
        snprintf(err, errlen,
                 "rule \"%s\" has no permissions (any of r, w, l, a)", shown);
        return -EINVAL;
    }
    for (const char *p = tok; p < colon; p++) {
        switch (*p) {
        case 'r':
            perms |= ACL_R;
            break;
        case 'w':
            perms |= ACL_W;
            break;
        case 'l':
            perms |= ACL_L;
            break;
        case 'a':
            perms |= ACL_A;
            break;
        default:
            snprintf(
                err, errlen,
                "rule \"%s\": unknown permission '%c' (use r, w, l, a)", shown,
                (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f ? *p
                                                                      : '?');
            return -EINVAL;
        }
    }
    pfx = colon + 1;
    plen = len - (size_t)(pfx - tok);
    if (plen == 0) {
        snprintf(err, errlen,
                 "rule \"%s\" has an empty prefix (use * for every name)",
                 shown);
        return -EINVAL;
    }
    /* A trailing `*` is the prefix without it; `*` alone is every name. */
    if (pfx[plen - 1] == '*')
        plen--;
    for (size_t i = 0; i < plen; i++) {
        unsigned char c = (unsigned char)pfx[i];
        if (c == '*') {
            snprintf(err, errlen, "rule \"%s\": '*' may only end the prefix",
                     shown);
            return -EINVAL;
        }
        if (c < 0x20 || c == 0x7f) {
            snprintf(err, errlen,
                     "rule \"%s\": control character in the prefix", shown);
            return -EINVAL;
        }
    }
    if (plen > ACL_PREFIX_MAX) {
        snprintf(err, errlen, "rule \"%s\": prefix longer than %d bytes", shown,
                 ACL_PREFIX_MAX);
        return -EINVAL;
    }
    out->prefix = malloc(plen + 1);
    if (!out->prefix) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    memcpy(out->prefix, pfx, plen);
    out->prefix[plen] = '\0';
    out->plen = plen;
    out->perms = perms;
    return 0;
}

void acl_rules_free(acl_rules *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].prefix);
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

bool acl_allows(const acl_rules *r, unsigned perm, const char *name, size_t len)
{
    if (!r || !name || perm == 0)
        return false;
    for (size_t i = 0; i < r->n; i++) {
        const acl_rule *ru = &r->v[i];
        if ((ru->perms & perm) == perm && ru->plen <= len &&
            memcmp(ru->prefix, name, ru->plen) == 0)
            return true;
    }
    return false;
}

bool acl_allows_any(const acl_rules *r, unsigned perm)
{
    if (!r || perm == 0)
        return false;
    for (size_t i = 0; i < r->n; i++)
        if ((r->v[i].perms & perm) == perm)
            return true;
    return false;
}

bool acl_may_read(const acl_rules *r, const char *name, size_t len)
{
    return acl_allows(r, ACL_R, name, len);
}

/* ------------------------------------------------------------------ */
/* Checking requests                                                  */
/* ------------------------------------------------------------------ */

/* Where a request's parameters are: a proto_request's args (and scanned
 * cases), or a JSON params object (a nested request). */
typedef struct acl_src {
    const proto_method *m;
    const proto_request *req; /* or NULL */
    const json_t *params;     /* when req is NULL; may be NULL */
} acl_src;

static const json_t *acl_param(const acl_src *s, const char *key)
{
    if (s->req) {
        int i = proto_param_index(s->m, key);
        return i < 0 ? NULL : s->req->args[i];
    }
    return s->params ? json_object_get(s->params, key) : NULL;
}

static int acl_deny(char *why, size_t whylen, const char *method,
                    const char *what, size_t wlen, unsigned perm)
{
    char shown[80], letters[8];
    if (why && whylen) {
        if (what)
            snprintf(why, whylen, "%s on \"%s\" needs %s", method,
                     acl_shown(what, wlen, shown, sizeof shown),
                     acl_perms_str(perm, letters));
        else
            snprintf(why, whylen, "%s needs %s", method,
                     acl_perms_str(perm, letters));
    }
    return -EACCES;
}

static int acl_unreadable(char *why, size_t whylen, const char *method,
                          const char *what)
{
    if (why && whylen)
        snprintf(why, whylen, "%s: %s", method, what);
    return -EACCES;
}

/* Checks perm on the string value v (a name parameter). */
static int acl_check_name(const acl_rules *r, const char *method,
                          const json_t *v, unsigned perm, char *why,
                          size_t whylen)
{
    const char *s = json_string_value(v);
    if (!s)
        return acl_unreadable(why, whylen, method, "a name is missing");
    if (!acl_allows(r, perm, s, json_string_length(v)))
        return acl_deny(why, whylen, method, s, json_string_length(v), perm);
    return 0;
}

static int acl_check_json_depth(const acl_rules *r, const json_t *request,
                                int depth, char *why, size_t whylen);

static int acl_check_src(const acl_rules *r, const acl_src *s,
                         const acl_method *e, int depth, char *why,
                         size_t whylen)
{
    const char *mn = s->m->name;
    const json_t *v;
    int rc;

    if (!e)
        return acl_unreadable(why, whylen, mn, "no permission is defined");
    switch (e->kind) {
    case ACL_K_OPEN:
    case ACL_K_FILTER:
        return 0;
    case ACL_K_NAME:
        rc = acl_check_name(r, mn, acl_param(s, "name"), e->perm, why, whylen);
        if (rc == 0 && e->name2)
            rc = acl_check_name(r, mn, acl_param(s, e->name2), e->perm, why,
                                whylen);
        return rc;
    case ACL_K_SELECT:
        if (s->req && s->req->cases) {
            for (size_t i = 0; i < s->req->ncases; i++) {
                rc = acl_check_name(r, mn, s->req->cases[i].name, e->perm, why,
                                    whylen);
                if (rc)
                    return rc;
            }
            return 0;
        }
        v = acl_param(s, "cases");
        if (!json_is_array(v))
            return acl_unreadable(why, whylen, mn, "cases is not an array");
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *c = json_array_get(v, i);
            const json_t *nm = json_object_get(c, "recv");
            if (!nm)
                nm = json_object_get(c, "send");
            rc = acl_check_name(r, mn, nm, e->perm, why, whylen);
            if (rc)
                return rc;
        }
        return 0;
    case ACL_K_NESTED:
        if (e->name2 && !acl_allows(r, e->perm, e->name2, strlen(e->name2)))
            return acl_deny(why, whylen, mn, e->name2, strlen(e->name2),
                            e->perm);
        if (depth >= ACL_NEST_MAX)
            return acl_unreadable(why, whylen, mn,
                                  "requests nested too deeply");
        return acl_check_json_depth(r, acl_param(s, "request"), depth + 1, why,
                                    whylen);
    case ACL_K_SERVER:
        if (e->name2 && acl_param(s, e->name2) &&
            !json_is_null(acl_param(s, e->name2))) {
            if (!acl_allows(r, ACL_A, "", 0))
                return acl_deny(why, whylen, mn, "*", 1, ACL_A);
            return 0;
        }
        if (!acl_allows_any(r, e->perm))
            return acl_deny(why, whylen, mn, NULL, 0, e->perm);
        return 0;
    case ACL_K_UNKNOWN:
        break;
    }
    return acl_unreadable(why, whylen, mn, "no permission is defined");
}

static int acl_check_json_depth(const acl_rules *r, const json_t *request,
                                int depth, char *why, size_t whylen)
{
    const char *mname = json_string_value(json_object_get(request, "method"));
    const json_t *params = json_object_get(request, "params");
    acl_src s = {0};

    if (!mname)
        return acl_unreadable(why, whylen, "request", "no method");
    s.m = proto_method_find(mname);
    if (!s.m)
        return acl_unreadable(why, whylen, "request", "unknown method");
    if (params && !json_is_object(params))
        return acl_unreadable(why, whylen, s.m->name,
                              "params is not an object");
    s.params = params;
    return acl_check_src(r, &s, acl_method_of(s.m), depth, why, whylen);
}

int acl_check_json(const acl_rules *r, const json_t *request, char *why,
                   size_t whylen)
{
    return acl_check_json_depth(r, request, 0, why, whylen);
}

int acl_check_request(const acl_rules *r, const proto_request *req, char *why,
                      size_t whylen)
{
    acl_src s = {0};

    if (!req || !req->method)
        return acl_unreadable(why, whylen, "request", "no method");
    s.m = req->method;
    s.req = req;
    return acl_check_src(r, &s, acl_method_of(s.m), 0, why, whylen);
}

int acl_filter_objects(const acl_rules *r, json_t *result)
{
    json_t *objs = json_object_get(result, "objects");
    json_t *kept, *o;
    size_t i;
    int removed = 0;

    if (!json_is_array(objs))
        return -EINVAL;
    /* A new array rather than removals in place: removing shifts the rest,
     * O(n^2) on a large namespace. */
    kept = json_array();
    if (!kept)
        return -ENOMEM;
    json_array_foreach(objs, i, o)
    {
        json_t *nm = json_object_get(o, "name");
        if (json_is_string(nm) &&
            acl_may_read(r, json_string_value(nm), json_string_length(nm))) {
            if (json_array_append(kept, o) != 0) {
                json_decref(kept);
                return -ENOMEM;
            }
        } else {
            removed++;
        }
    }
    if (json_object_set_new(result, "objects", kept) != 0)
        return -ENOMEM;
    return removed;
}
