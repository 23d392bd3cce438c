/*
 * users.c - the users file, its tables, their atomic swap, and passwords
 * (format and integration in users.h).
 *
 * A table is built whole from the file and never changes afterwards, so a
 * session can read its user without a lock.  A reload builds a new table
 * and swaps the slot's pointer under a mutex; readers take a reference
 * under the same mutex, and the old table goes when its last holder lets
 * go.  Loads are rare and getting a table happens once per
 * authentication, so the mutex costs nothing that matters.
 */
#include "users.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct users_user {
    char *name;
    char *hash; /* NULL: `-`, no password */
    bool has_uid, has_gid;
    uid_t uid;
    gid_t gid;
    unsigned line;
    acl_rules rules;
};

struct users_table {
    atomic_long refs;
    uint64_t gen;
    size_t n;
    users_user *v;     /* sorted by name */
    const char *dummy; /* a user's hash (borrowed), or NULL: hashed for an
                        * unknown name, so that it costs what a known
                        * one costs at this file's settings */
};

struct users_slot {
    pthread_mutex_t mu;
    users_table *cur;
    uint64_t gen;
};

/* ------------------------------------------------------------------ */
/* Tables                                                             */
/* ------------------------------------------------------------------ */

static void users_user_clear(users_user *u)
{
    free(u->name);
    if (u->hash) {
        explicit_bzero(u->hash, strlen(u->hash));
        free(u->hash);
    }
    acl_rules_free(&u->rules);
}

static void users_table_free(users_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        users_user_clear(&t->v[i]);
    free(t->v);
    free(t);
}

users_table *users_ref(users_table *t)
{
    if (t)
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void users_unref(users_table *t)
{
    if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        users_table_free(t);
}

size_t users_count(const users_table *t)
{
    return t ? t->n : 0;
}

uint64_t users_table_gen(const users_table *t)
{
    return t ? t->gen : 0;
}

static int users_cmp(const void *a, const void *b)
{
    return strcmp(((const users_user *)a)->name, ((const users_user *)b)->name);
}

const users_user *users_user_at(const users_table *t, size_t i)
{
    return t && i < t->n ? &t->v[i] : NULL;
}

const users_user *users_find(const users_table *t, const char *name)
{
    users_user key;
    if (!t || !name || t->n == 0)
        return NULL;
    key.name = (char *)name;
    return bsearch(&key, t->v, t->n, sizeof *t->v, users_cmp);
}

const users_user *users_find_peer(const users_table *t, uid_t uid, gid_t gid)
{
    if (!t)
        return NULL;
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].has_uid && t->v[i].uid == uid)
            return &t->v[i];
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].has_gid && t->v[i].gid == gid)
            return &t->v[i];
    return NULL;
}

const char *users_user_name(const users_user *u)
{
    return u->name;
}

const acl_rules *users_user_rules(const users_user *u)
{
    return &u->rules;
}

bool users_user_has_password(const users_user *u)
{
    return u->hash != NULL;
}

unsigned users_user_line(const users_user *u)
{
    return u->line;
}

/* ------------------------------------------------------------------ */
/* Parsing                                                            */
/* ------------------------------------------------------------------ */

typedef struct users_parser {
    const char *path;
    unsigned line;
    char *err;
    size_t errlen;
    users_user *v;
    size_t n, cap;
} users_parser;

__attribute__((format(printf, 2, 3))) static int
users_fail(users_parser *p, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s:%u: %s", p->path, p->line, msg);
    return -EINVAL;
}

static bool users_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > USERS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '@' ||
              c == '-'))
            return false;
    }
    return true;
}

/* Reads a decimal id below (uint32)-1 (which means "no id" to the
 * kernel). */
static int users_id(const char *s, size_t len, uint32_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v >= UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static bool users_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Returns the next token of [*pos, end) and advances *pos past it; NULL at
 * the end of the line. */
static const char *users_token(const char **pos, const char *end, size_t *len)
{
    const char *p = *pos, *t;
    while (p < end && users_blank(*p))
        p++;
    if (p == end) {
        *pos = p;
        return NULL;
    }
    t = p;
    while (p < end && !users_blank(*p))
        p++;
    *len = (size_t)(p - t);
    *pos = p;
    return t;
}

/* Returns true when hash looks whole: crypt_checksalt judges only its
 * method, and a truncated hash (a bare setting, a cut-off line) would
 * make a user who can never log in.  The last $-field is the hash proper,
 * in crypt's base64; yescrypt's ($y$, $gy$, $7$) is 43 characters. */
static bool users_hash_whole(const char *hash)
{
    const char *last = strrchr(hash, '$') + 1;
    size_t dollars = 0, n = strlen(last);
    bool yes = strncmp(hash, "$y$", 3) == 0 || strncmp(hash, "$gy$", 4) == 0 ||
               strncmp(hash, "$7$", 3) == 0;

    for (const char *c = hash; *c; c++)
        dollars += *c == '$';
    if (dollars < (yes ? 4u : 3u) || n == 0 || (yes && n < 43))
        return false;
    return strspn(last, "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "abcdefghijklmnopqrstuvwxyz") == n;
}

static int users_hash_check(users_parser *p, const char *name, const char *hash)
{
    if (strlen(hash) >= USERS_HASH_MAX)
        return users_fail(p, "password hash of \"%s\" is too long", name);
    if (hash[0] != '$')
        return users_fail(p,
                          "password hash of \"%s\" is not a crypt(5) hash "
                          "(make one with chand --hash-password, or write "
                          "- for no password)",
                          name);
    switch (crypt_checksalt(hash)) {
    case CRYPT_SALT_OK:
        if (!users_hash_whole(hash))
            return users_fail(p,
                              "password hash of \"%s\" is incomplete (a "
                              "whole line of chand --hash-password)",
                              name);
        return 0;
    case CRYPT_SALT_METHOD_LEGACY:
    case CRYPT_SALT_TOO_CHEAP:
        return users_fail(p,
                          "password hash of \"%s\" uses a weak method "
                          "(make a new one with chand --hash-password)",
                          name);
    case CRYPT_SALT_METHOD_DISABLED:
        return users_fail(p,
                          "password hash of \"%s\" uses a method this "
                          "libcrypt does not support",
                          name);
    default:
        return users_fail(p, "password hash of \"%s\" is not valid", name);
    }
}

static int users_add_rule(users_parser *p, users_user *u, const char *tok,
                          size_t len)
{
    char msg[256];
    acl_rule r;
    acl_rule *nv;
    int rc = acl_rule_parse(tok, len, &r, msg, sizeof msg);

    if (rc)
        return rc == -ENOMEM ? rc : users_fail(p, "%s", msg);
    nv = realloc(u->rules.v, (u->rules.n + 1) * sizeof *nv);
    if (!nv) {
        free(r.prefix);
        return -ENOMEM;
    }
    nv[u->rules.n++] = r;
    u->rules.v = nv;
    return 0;
}

/* Parses the fields of one line into u (cleared by the caller on error). */
static int users_parse_fields(users_parser *p, const char *s, const char *end,
                              users_user *u)
{
    const char *pos = s, *tok;
    size_t len;
    char shown[80];
    uint32_t id;
    int rc;

    tok = users_token(&pos, end, &len);
    if (!users_name_ok(tok, len))
        return users_fail(p,
                          "invalid user name \"%s\" (1-%d of A-Z a-z 0-9 "
                          ". _ @ -)",
                          acl_shown(tok, len, shown, sizeof shown),
                          USERS_NAME_MAX);
    u->name = strndup(tok, len);
    if (!u->name)
        return -ENOMEM;
    tok = users_token(&pos, end, &len);
    if (!tok)
        return users_fail(p,
                          "user \"%s\" has no password hash (write - for "
                          "none)",
                          u->name);
    if (!(len == 1 && tok[0] == '-')) {
        u->hash = strndup(tok, len);
        if (!u->hash)
            return -ENOMEM;
        if ((rc = users_hash_check(p, u->name, u->hash)) != 0)
            return rc;
    }
    while ((tok = users_token(&pos, end, &len)) != NULL) {
        bool is_uid = len > 4 && memcmp(tok, "uid=", 4) == 0;
        bool is_gid = len > 4 && memcmp(tok, "gid=", 4) == 0;
        if (is_uid || is_gid) {
            if ((is_uid && u->has_uid) || (is_gid && u->has_gid))
                return users_fail(p, "user \"%s\" has two %s fields", u->name,
                                  is_uid ? "uid" : "gid");
            if (users_id(tok + 4, len - 4, &id) != 0)
                return users_fail(p, "user \"%s\": invalid %s \"%s\"", u->name,
                                  is_uid ? "uid" : "gid",
                                  acl_shown(tok, len, shown, sizeof shown));
            if (is_uid) {
                u->has_uid = true;
                u->uid = (uid_t)id;
            } else {
                u->has_gid = true;
                u->gid = (gid_t)id;
            }
            continue;
        }
        if ((rc = users_add_rule(p, u, tok, len)) != 0)
            return rc;
    }
    return 0;
}

/* Checks u against the users already read (names, uid and gid mappings). */
static int users_unique(users_parser *p, const users_user *u)
{
    for (size_t i = 0; i < p->n; i++) {
        const users_user *o = &p->v[i];
        if (strcmp(o->name, u->name) == 0)
            return users_fail(p, "user \"%s\" is already defined on line %u",
                              u->name, o->line);
        if (u->has_uid && o->has_uid && o->uid == u->uid)
            return users_fail(p, "uid %lu already maps to \"%s\" (line %u)",
                              (unsigned long)u->uid, o->name, o->line);
        if (u->has_gid && o->has_gid && o->gid == u->gid)
            return users_fail(p, "gid %lu already maps to \"%s\" (line %u)",
                              (unsigned long)u->gid, o->name, o->line);
    }
    return 0;
}

static int users_parse_line(users_parser *p, const char *s, size_t len)
{
    const char *end = s + len, *q = s;
    users_user u = {0};
    int rc;

    if (len && s[len - 1] == '\r')
        end--;
    if (memchr(s, '\0', len))
        return users_fail(p, "NUL byte in the line");
    if (len > USERS_LINE_MAX)
        return users_fail(p, "line longer than %d bytes", USERS_LINE_MAX);
    while (q < end && users_blank(*q))
        q++;
    if (q == end || *q == '#')
        return 0;
    for (const char *c = q; c < end; c++)
        if ((unsigned char)*c < 0x20 && *c != '\t')
            return users_fail(p, "control character in the line");
    if (p->n >= USERS_MAX)
        return users_fail(p, "more than %d users", USERS_MAX);
    u.line = p->line;
    rc = users_parse_fields(p, q, end, &u);
    if (rc == 0)
        rc = users_unique(p, &u);
    if (rc == 0 && p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 16;
        users_user *nv = realloc(p->v, ncap * sizeof *nv);
        if (!nv)
            rc = -ENOMEM;
        else
            p->v = nv, p->cap = ncap;
    }
    if (rc) {
        users_user_clear(&u);
        if (rc == -ENOMEM)
            snprintf(p->err, p->errlen, "%s:%u: out of memory", p->path,
                     p->line);
        return rc;
    }
    p->v[p->n++] = u;
    return 0;
}

int users_parse(const char *path, const char *text, size_t len,
                users_table **out, char *err, size_t errlen)
{
    users_parser p = {.path = path, .err = err, .errlen = errlen};
    const char *s = text, *end = text + len;
    users_table *t;
    int rc = 0;

    *out = NULL;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        p.line++;
        if ((rc = users_parse_line(&p, s, n)) != 0)
            goto out_free;
        s += n + (nl ? 1 : 0);
    }
    t = calloc(1, sizeof *t);
    if (!t) {
        rc = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory", path);
        goto out_free;
    }
    atomic_init(&t->refs, 1);
    t->n = p.n;
    t->v = p.v;
    if (t->n)
        qsort(t->v, t->n, sizeof *t->v, users_cmp);
    for (size_t i = 0; i < t->n && !t->dummy; i++)
        t->dummy = t->v[i].hash;
    *out = t;
    return 0;

out_free:
    for (size_t i = 0; i < p.n; i++)
        users_user_clear(&p.v[i]);
    free(p.v);
    return rc;
}

int users_load(const char *path, users_table **out, char *err, size_t errlen)
{
    FILE *f;
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    int rc;

    *out = NULL;
    f = fopen(path, "rb");
    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    for (;;) {
        if (len == cap) {
            char *nb;
            if (cap >= USERS_FILE_MAX) {
                snprintf(err, errlen, "%s: larger than %u bytes", path,
                         USERS_FILE_MAX);
                rc = -EFBIG;
                goto out_free;
            }
            cap = cap ? cap * 2 : 16384;
            nb = realloc(buf, cap);
            if (!nb) {
                snprintf(err, errlen, "%s: out of memory", path);
                rc = -ENOMEM;
                goto out_free;
            }
            buf = nb;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        rc = -EIO;
        goto out_free;
    }
    rc = users_parse(path, buf ? buf : "", len, out, err, errlen);
out_free:
    if (buf) {
        /* The file holds password hashes: leave no copy behind. */
        explicit_bzero(buf, len);
        free(buf);
    }
    fclose(f);
    return rc;
}

int users_file_private(const char *path, char *warn, size_t warnlen)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        int rc = -errno;
        snprintf(warn, warnlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    if (st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP)) {
        snprintf(warn, warnlen,
                 "%s holds password hashes but is %s (mode %04o): chmod "
                 "640 (or 600) it",
                 path,
                 st.st_mode & (S_IWOTH | S_IWGRP) ? "writable by others"
                                                  : "readable by everyone",
                 (unsigned)(st.st_mode & 07777));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Passwords                                                          */
/* ------------------------------------------------------------------ */

/* A yescrypt setting at libcrypt's default cost: an unknown user's
 * password is hashed with it, so that it costs as much as a known one. */
#define USERS_DUMMY_SETTING "$y$j9T$nYgLuJ5YjKEIRpEyPSGaC/"

/* Returns true when a and b are equal, in a time that depends only on
 * their lengths. */
static bool users_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    volatile unsigned char d = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

/* Hashes password with setting; returns 0 when the result equals expect
 * (NULL: compute only, then -EACCES). */
static int users_crypt_check(const char *password, const char *setting,
                             const char *expect)
{
    void *data = NULL;
    int size = 0, rc;
    const char *h;

    if (strlen(password) > USERS_PASSWORD_MAX)
        return -EINVAL;
    h = crypt_ra(password, setting, &data, &size);
    if (!h || h[0] == '*')
        rc = data ? -EACCES : -ENOMEM;
    else
        rc = expect && users_equal(h, expect) ? 0 : -EACCES;
    if (data) {
        explicit_bzero(data, (size_t)size);
        free(data);
    }
    return rc;
}

int users_verify(const users_user *u, const char *password)
{
    if (!u || !password)
        return -EACCES;
    if (!u->hash) {
        users_crypt_check(password, USERS_DUMMY_SETTING, NULL);
        return -EACCES;
    }
    return users_crypt_check(password, u->hash, u->hash);
}

int users_authenticate(const users_table *t, const char *name,
                       const char *password, const users_user **out)
{
    const users_user *u = users_find(t, name);
    int rc;

    *out = NULL;
    if (!password)
        return -EACCES;
    if (!u) {
        users_crypt_check(password,
                          t && t->dummy ? t->dummy : USERS_DUMMY_SETTING, NULL);
        return -EACCES;
    }
    rc = users_verify(u, password);
    if (rc == -EINVAL)
        rc = -EACCES;
    if (rc == 0)
        *out = u;
    return rc;
}

int users_hash_password(const char *pw, char *out, size_t outlen)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    void *data = NULL;
    int size = 0, rc = 0;
    const char *h;

    if (!pw || !*pw || strlen(pw) > USERS_PASSWORD_MAX)
        return -EINVAL;
    /* NULL random bytes: libcrypt takes them from the OS (getentropy). */
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt))
        return -EIO;
    h = crypt_ra(pw, salt, &data, &size);
    if (!h || h[0] == '*')
        rc = -EIO;
    else if (strlen(h) >= outlen)
        rc = -ENOSPC;
    else
        memcpy(out, h, strlen(h) + 1);
    if (data) {
        explicit_bzero(data, (size_t)size);
        free(data);
    }
    return rc;
}

int users_read_password(FILE *f, char *buf, size_t len)
{
    size_t n = 0;
    int c;
    bool nul = false;

    while ((c = getc(f)) != EOF && c != '\n') {
        if (c == '\0')
            nul = true;
        if (n + 1 >= len) {
            explicit_bzero(buf, len);
            while ((c = getc(f)) != EOF && c != '\n')
                ;
            return -E2BIG;
        }
        buf[n++] = (char)c;
    }
    if (ferror(f)) {
        explicit_bzero(buf, len);
        return -EIO;
    }
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    if (nul) {
        explicit_bzero(buf, len);
        return -EILSEQ;
    }
    return n ? 0 : -EINVAL;
}

/* ------------------------------------------------------------------ */
/* The slot                                                           */
/* ------------------------------------------------------------------ */

users_slot *users_slot_new(void)
{
    users_slot *s = calloc(1, sizeof *s);
    if (s && pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void users_slot_free(users_slot *s)
{
    if (!s)
        return;
    users_unref(s->cur);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int users_slot_load(users_slot *s, const char *path, char *err, size_t errlen)
{
    users_table *t, *old;
    int rc = users_load(path, &t, err, errlen);

    if (rc)
        return rc;
    pthread_mutex_lock(&s->mu);
    old = s->cur;
    t->gen = ++s->gen;
    s->cur = t;
    pthread_mutex_unlock(&s->mu);
    users_unref(old);
    return 0;
}

users_table *users_slot_get(users_slot *s)
{
    users_table *t;
    pthread_mutex_lock(&s->mu);
    t = users_ref(s->cur);
    pthread_mutex_unlock(&s->mu);
    return t;
}

uint64_t users_slot_gen(users_slot *s)
{
    uint64_t g;
    pthread_mutex_lock(&s->mu);
    g = s->cur ? s->gen : 0;
    pthread_mutex_unlock(&s->mu);
    return g;
}
