/*
 * acl.c - rules PERMS:PREFIX, the method -> permission table, and the
 * checks the dispatcher makes (see acl.h for the model).
 *
 * The table below is the one for PROTOCOL.md's "Permissions" section:
 *
 *   method                      needs
 *   hello, auth, ping           nothing (also before authentication)
 *   make, send, recv, close     w on name (make: and on dead_letter)
 *   ack, nack, touch, term      w on name
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
    {"make", ACL_K_NAME, ACL_W, "dead_letter"},
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

/* A request is decided in one walk over the user's rules: first every
 * name it touches (its name, cond.wait's mutex, select's cases, and those
 * of its nested requests, all the way down) is collected with the
 * permission it needs there; then each rule is compared once with every
 * collected name, adding up what it grants; then the first name short of
 * its permission denies the request.  A request touching more than
 * ACL_WALK_MAX names (a large select) takes one walk per ACL_WALK_MAX. */
#define ACL_WALK_MAX 32

typedef struct acl_need {
    const char *method; /* for the message */
    const char *name;   /* NULL: any rule will do (server methods) */
    size_t len;
    unsigned perm, granted;
    bool star; /* name "" (only `*` matches): shown as "*" */
} acl_need;

typedef struct acl_walk {
    const acl_rules *r;
    char *why;
    size_t whylen;
    size_t n;
    acl_need v[ACL_WALK_MAX];
} acl_walk;

/* Walks the rules once for the needs collected so far and empties them.
 * Returns 0 when every one is granted, else -EACCES with why filled for
 * the first that is not. */
static int acl_decide(acl_walk *w)
{
    const acl_rules *r = w->r;

    for (size_t i = 0; r && i < r->n; i++) {
        const acl_rule *ru = &r->v[i];
        for (size_t j = 0; j < w->n; j++) {
            acl_need *nd = &w->v[j];
            if (!nd->name || (ru->plen <= nd->len &&
                              memcmp(ru->prefix, nd->name, ru->plen) == 0))
                nd->granted |= ru->perms;
        }
    }
    for (size_t j = 0; j < w->n; j++) {
        const acl_need *nd = &w->v[j];
        if ((nd->granted & nd->perm) == nd->perm && nd->perm)
            continue;
        w->n = 0;
        if (nd->star)
            return acl_deny(w->why, w->whylen, nd->method, "*", 1, nd->perm);
        return acl_deny(w->why, w->whylen, nd->method, nd->name, nd->len,
                        nd->perm);
    }
    w->n = 0;
    return 0;
}

/* Adds one need (a full walk decides what it has first). */
static int acl_need_add(acl_walk *w, const char *method, const char *name,
                        size_t len, unsigned perm, bool star)
{
    int rc;

    if (w->n == ACL_WALK_MAX && (rc = acl_decide(w)) != 0)
        return rc;
    w->v[w->n++] = (acl_need){
        .method = method, .name = name, .len = len, .perm = perm, .star = star};
    return 0;
}

/* Adds perm on the string value v (a name parameter). */
static int acl_need_name(acl_walk *w, const char *method, const json_t *v,
                         unsigned perm)
{
    const char *s = json_string_value(v);
    if (!s)
        return acl_unreadable(w->why, w->whylen, method, "a name is missing");
    return acl_need_add(w, method, s, json_string_length(v), perm, false);
}

static int acl_collect_json(acl_walk *w, const json_t *request, int depth);

/* Collects what the request in s needs (e is its table entry). */
static int acl_collect(acl_walk *w, const acl_src *s, const acl_method *e,
                       int depth)
{
    const char *mn = s->m->name;
    const json_t *v;
    int rc;

    if (!e)
        return acl_unreadable(w->why, w->whylen, mn,
                              "no permission is defined");
    switch (e->kind) {
    case ACL_K_OPEN:
    case ACL_K_FILTER:
        return 0;
    case ACL_K_NAME:
        rc = acl_need_name(w, mn, acl_param(s, "name"), e->perm);
        /* name2 is required by proto where it must be (cond.wait's
         * mutex), optional where it may be (make's dead_letter). */
        if (rc == 0 && e->name2 && acl_param(s, e->name2))
            rc = acl_need_name(w, mn, acl_param(s, e->name2), e->perm);
        return rc;
    case ACL_K_SELECT:
        if (s->req && s->req->cases) {
            for (size_t i = 0; i < s->req->ncases; i++)
                if ((rc = acl_need_name(w, mn, s->req->cases[i].name,
                                        e->perm)) != 0)
                    return rc;
            return 0;
        }
        v = acl_param(s, "cases");
        if (!json_is_array(v))
            return acl_unreadable(w->why, w->whylen, mn,
                                  "cases is not an array");
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *c = json_array_get(v, i);
            const json_t *nm = json_object_get(c, "recv");
            if (!nm)
                nm = json_object_get(c, "send");
            if ((rc = acl_need_name(w, mn, nm, e->perm)) != 0)
                return rc;
        }
        return 0;
    case ACL_K_NESTED:
        /* The nested request is checked now, when it is made, against the
         * same rules: it will run detached, with no session to ask. */
        if (e->name2 && (rc = acl_need_add(w, mn, e->name2, strlen(e->name2),
                                           e->perm, false)) != 0)
            return rc;
        if (depth >= ACL_NEST_MAX)
            return acl_unreadable(w->why, w->whylen, mn,
                                  "requests nested too deeply");
        return acl_collect_json(w, acl_param(s, "request"), depth + 1);
    case ACL_K_SERVER:
        if (e->name2 && acl_param(s, e->name2) &&
            !json_is_null(acl_param(s, e->name2)))
            return acl_need_add(w, mn, "", 0, ACL_A, true);
        return acl_need_add(w, mn, NULL, 0, e->perm, false);
    case ACL_K_UNKNOWN:
        break;
    }
    return acl_unreadable(w->why, w->whylen, mn, "no permission is defined");
}

static int acl_collect_json(acl_walk *w, const json_t *request, int depth)
{
    const char *mname = json_string_value(json_object_get(request, "method"));
    const json_t *params = json_object_get(request, "params");
    acl_src s = {0};

    if (!mname)
        return acl_unreadable(w->why, w->whylen, "request", "no method");
    s.m = proto_method_find(mname);
    if (!s.m)
        return acl_unreadable(w->why, w->whylen, "request", "unknown method");
    if (params && !json_is_object(params))
        return acl_unreadable(w->why, w->whylen, s.m->name,
                              "params is not an object");
    s.params = params;
    return acl_collect(w, &s, acl_method_of(s.m), depth);
}

/* Collects s's needs and decides them. */
static int acl_check_src(const acl_rules *r, const acl_src *s, char *why,
                         size_t whylen)
{
    acl_walk w = {.r = r, .why = why, .whylen = whylen};
    int rc = acl_collect(&w, s, acl_method_of(s->m), 0);

    return rc ? rc : acl_decide(&w);
}

int acl_check_json(const acl_rules *r, const json_t *request, char *why,
                   size_t whylen)
{
    acl_walk w = {.r = r, .why = why, .whylen = whylen};
    int rc = acl_collect_json(&w, request, 0);

    return rc ? rc : acl_decide(&w);
}

int acl_check_request(const acl_rules *r, const proto_request *req, char *why,
                      size_t whylen)
{
    acl_src s = {0};

    if (!req || !req->method)
        return acl_unreadable(why, whylen, "request", "no method");
    s.m = req->method;
    s.req = req;
    return acl_check_src(r, &s, why, whylen);
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
