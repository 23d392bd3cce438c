/*
 * acl.h - per-name permissions: rules `PERMS:PREFIX` and the permission
 * every protocol method needs.
 *
 * This module owns the rule syntax, the method -> permission table (one
 * entry for every method of proto.c's table; test_acl fails when one is
 * missing) and the checks.  It has no sockets, no users file and no
 * sessions: users.c parses the rules of a user with acl_rule_parse, and the
 * dispatcher asks acl_check_request before it runs a request.
 *
 * A rule is PERMS:PREFIX.  PERMS is one or more of
 *   r  read:  len, list, map.load, map.range, map.len, atomic.load,
 *             runtime.stats, runtime.dump
 *   w  write: make, send, recv (it removes a value), close, select, the
 *             Map and atomic writes, pool, timers
 *   l  locks and sync: mutex, rwmutex, cond, wg, once
 *   a  admin: drop, runtime.gomaxprocs with n
 * PREFIX is a name prefix compared byte for byte: `jobs` covers "jobs",
 * "jobs2" and "jobs.x", not "job".  End a prefix with a separator (`jobs.`)
 * to fence a namespace.  `*` alone covers every name; a prefix ending in
 * `*` (`jobs.*`) is the prefix without it.  A user's rules add up (there
 * are no deny rules), and what no rule grants is denied.
 *
 * How each method is checked (the table for PROTOCOL.md is in acl.c):
 *   hello, auth, ping      always allowed, also before authentication
 *   named methods          the permission on params.name (cond.wait also
 *                          needs l on params.mutex)
 *   select                 w on every case's channel (send and recv)
 *   go                     its nested request, checked as the same user
 *                          when it is made (recursively for a go in a go)
 *   timer.afterfunc        w on the name it makes ("afterfunc.N": a rule
 *                          such as w:afterfunc. or w:*) and its nested
 *                          request, when it is made
 *   list, runtime.dump     allowed; the answer shows only names with r
 *                          (acl_may_read, acl_filter_objects)
 *   runtime.stats          r in at least one rule (counts, no names)
 *   runtime.gomaxprocs     with n: a on `*` (the whole server); without:
 *                          as runtime.stats
 *
 * Integration (dispatch): with users configured, a session that has not
 * authenticated may run only methods for which acl_method_open() is true
 * (else reason `unauthenticated`).  After authentication, before running a
 * request (after proto has validated it), call
 *     if (acl_check_request(users_user_rules(u), req, why, sizeof why))
 *         answer reason `denied` with why, change nothing;
 * and filter list / runtime.dump answers with acl_may_read (while building
 * them) or acl_filter_objects (on the built result).
 *
 * Thread safety: everything here reads immutable data; any thread may call
 * any function at any time.
 */
#ifndef CHAND_ACL_H
#define CHAND_ACL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "proto.h"

/* Permission bits. */
#define ACL_R 1u
#define ACL_W 2u
#define ACL_L 4u
#define ACL_A 8u

/* Longest rule prefix, bytes (an object name is at most 255). */
#define ACL_PREFIX_MAX PROTO_NAME_MAX

/* One rule.  prefix is owned by the acl_rules holding it; plen == 0 (and
 * prefix "") is `*`. */
typedef struct acl_rule {
    unsigned perms;
    size_t plen;
    char *prefix;
} acl_rule;

/* A user's rules, in file order. */
typedef struct acl_rules {
    size_t n;
    acl_rule *v;
} acl_rules;

/* How a method is checked (see the top of this file). */
typedef enum acl_kind {
    ACL_K_UNKNOWN = 0, /* not in the table: always denied */
    ACL_K_OPEN,        /* hello, auth, ping */
    ACL_K_NAME,        /* perm on params.name (and params.<name2>) */
    ACL_K_SELECT,      /* perm on every case's name */
    ACL_K_NESTED,      /* the nested params.request (and perm on name2
                        * taken as a fixed name, for timer.afterfunc) */
    ACL_K_FILTER,      /* allowed; names in the answer filtered by r */
    ACL_K_SERVER,      /* perm in any rule; gomaxprocs with n: a on * */
} acl_kind;

/* One entry of the method table. */
typedef struct acl_method {
    const char *method; /* proto's method name */
    acl_kind kind;
    unsigned perm;     /* ACL_R.. (0 for open and filtered methods) */
    const char *name2; /* ACL_K_NAME: a second name parameter checked
                        * with perm; ACL_K_NESTED: a fixed name checked
                        * with perm; else NULL */
} acl_method;

/* Parses one rule token (len bytes, not NUL-terminated, no whitespace)
 * into out (out->prefix is new: release with acl_rules_free or free).
 * Returns 0, or -EINVAL with err filled with a message naming the token. */
int acl_rule_parse(const char *tok, size_t len, acl_rule *out, char *err,
                   size_t errlen);
/* Frees the rules' prefixes and array (r itself is the caller's). */
void acl_rules_free(acl_rules *r);

/* Returns true when a rule of r grants every bit of perm on name (len
 * bytes). */
bool acl_allows(const acl_rules *r, unsigned perm, const char *name,
                size_t len);
/* Returns true when some rule of r has every bit of perm, on any prefix. */
bool acl_allows_any(const acl_rules *r, unsigned perm);
/* Returns true when r may read name (list and runtime.dump filter). */
bool acl_may_read(const acl_rules *r, const char *name, size_t len);

/* Returns the table entry of method m (borrowed, static), or NULL when the
 * method has none. */
const acl_method *acl_method_of(const proto_method *m);
/* Returns the table entry for a method name, or NULL. */
const acl_method *acl_method_named(const char *name);
/* Returns the whole table (static) and its length in *n. */
const acl_method *acl_methods(size_t *n);
/* Returns true for the methods a session may run before authenticating
 * (hello, auth, ping). */
bool acl_method_open(const proto_method *m);

/* Checks a validated request (either proto path: scanned, or
 * proto_check_request's) against r.  Returns 0 when allowed, or -EACCES
 * with why filled ("send on \"jobs\" needs w"): answer reason `denied`.
 * Nested requests (go, timer.afterfunc) are checked now, when they are
 * made, all the way down.  Every name the request touches is collected
 * first, then one walk over the rules decides them all (what several rules
 * grant on a name adds up). */
int acl_check_request(const acl_rules *r, const proto_request *req, char *why,
                      size_t whylen);
/* The same check for a request given as JSON {method, params} (a nested
 * request).  Returns 0, or -EACCES with why filled; a request it cannot
 * read (no method, unknown method, a name that is not a string, nesting
 * deeper than 8) is denied too. */
int acl_check_json(const acl_rules *r, const json_t *request, char *why,
                   size_t whylen);

/* Removes from result's "objects" array (list, runtime.dump) every element
 * whose "name" r may not read; elements without a string name are removed
 * too.  result is borrowed and changed in place.  Returns the number of
 * elements removed, or -EINVAL when result has no "objects" array. */
int acl_filter_objects(const acl_rules *r, json_t *result);

/* Copies at most 64 bytes of s (len bytes) into out (outlen >= 4) for an
 * error message, every byte that is not printable ASCII as '?' and "..."
 * when cut; returns out. */
const char *acl_shown(const char *s, size_t len, char *out, size_t outlen);

/* Writes the letters of perms ("rwl") into buf (at least 5 bytes) and
 * returns buf. */
char *acl_perms_str(unsigned perms, char *buf);

#endif /* CHAND_ACL_H */
