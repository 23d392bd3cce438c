/*
 * users.h - the users file: who may connect, how they prove it, and what
 * their rules allow.
 *
 * This module owns the users file format, its parsing into an immutable,
 * reference-counted table, the atomic swap of that table on reload, the
 * mapping of a unix socket peer's uid/gid to a user, and passwords
 * (libcrypt's yescrypt: hashing for `chand --hash-password`, and
 * verification with a constant-time comparison).  The rules themselves are
 * acl.h's.
 *
 * The file: one user per line, fields separated by spaces or tabs; blank
 * lines and lines whose first non-blank character is `#` are ignored; a
 * line ends with LF or CRLF and has at most USERS_LINE_MAX bytes.
 *
 *     # NAME   HASH                 [uid=N] [gid=N] RULE...
 *     alice    $y$j9T$...$...       rw:jobs. l:locks. r:*
 *     deploy   -        uid=1001    l:deploy. rw:deploy.
 *     ops      $y$j9T$...$...       gid=27  rwla:*
 *
 *   NAME  1-64 bytes of [A-Za-z0-9._@-], unique in the file.
 *   HASH  a crypt(5) hash as `chand --hash-password` prints it ($y$...,
 *         yescrypt; other strong methods libcrypt accepts, such as $2b$,
 *         also work), or `-`: no password (the user can only be named by
 *         its unix peer credentials or a TLS client certificate's CN).
 *   uid=N a unix socket peer with this uid is this user (SO_PEERCRED);
 *   gid=N else a peer with this primary gid is this user.  A uid or gid
 *         maps to one user at most.
 *   RULE  PERMS:PREFIX (acl.h), any number of them.
 * Errors name the file and line ("users:3: ...").
 *
 * Integration:
 *   - main/conf: a `users_file` key.  At start-up users_slot_new() and
 *     users_slot_load(slot, path, err, sizeof err): on error, log err and
 *     refuse to start.  On SIGHUP call users_slot_load again: on error the
 *     old table stays in force (log err as a warning).  Each time, log
 *     users_file_private's warning when it returns 1.
 *   - a session holds `users_table *users` (users_slot_get: a new
 *     reference) and `const users_user *user` (borrowed from that table),
 *     set at authentication; it calls users_unref(users) when it ends.  A
 *     reload therefore never frees what a live session points into.  (To
 *     apply new rules to live sessions instead, compare users_table_gen of
 *     the session's table with users_slot_gen and look the user up again by
 *     name in a fresh table.)
 *   - auth {user, password} (and hello's): users_authenticate() on a
 *     thread that may block for ~15 ms (the hash is deliberately slow:
 *     never on the I/O thread's loop), with authlimit.h's delay.
 *   - unix socket: getsockopt(SO_PEERCRED) then users_find_peer().
 *   - TLS: tls_peer_cn() then users_find().
 *   - chand --hash-password: users_read_password(stdin), then
 *     users_hash_password(), print the hash and a newline.
 *
 * Thread safety: a table is immutable; any thread may read it while it
 * holds a reference.  The slot's functions may be called from any thread.
 */
#ifndef CHAND_USERS_H
#define CHAND_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "acl.h"

#define USERS_LINE_MAX 4096        /* bytes of one line, without its end */
#define USERS_NAME_MAX 64          /* bytes of a user name */
#define USERS_HASH_MAX 256         /* bytes of a hash, with its NUL */
#define USERS_PASSWORD_MAX 1024    /* bytes of a password */
#define USERS_MAX 100000           /* users in one file */
#define USERS_FILE_MAX (64u << 20) /* bytes of the whole file */

typedef struct users_user users_user;
typedef struct users_table users_table;
typedef struct users_slot users_slot;

/* ---- a table ---- */

/* Parses the users file at path into a new table (refcount 1).  Returns 0
 * with *out set, or a negative errno with err filled ("path:line: why";
 * "path: why" for an unreadable file). */
int users_load(const char *path, users_table **out, char *err, size_t errlen);
/* Parses text (len bytes; may hold NULs, which are errors) as if read from
 * a file named path (for messages).  Returns as users_load. */
int users_parse(const char *path, const char *text, size_t len,
                users_table **out, char *err, size_t errlen);
/* Checks that the file at path is not world-readable nor writable by
 * others (it holds password hashes).  Returns 0 when private, 1 with warn
 * filled (log it as a warning), or a negative errno with warn filled. */
int users_file_private(const char *path, char *warn, size_t warnlen);
/* Takes a reference; returns t. */
users_table *users_ref(users_table *t);
/* Drops a reference (t may be NULL); the last one frees the table. */
void users_unref(users_table *t);
/* Returns the number of users. */
size_t users_count(const users_table *t);
/* Returns the generation the slot gave t (0 before it was installed). */
uint64_t users_table_gen(const users_table *t);

/* Returns the i-th user in name order (borrowed from t), or NULL when i is
 * past the end. */
const users_user *users_user_at(const users_table *t, size_t i);
/* Returns the user named name (borrowed from t), or NULL. */
const users_user *users_find(const users_table *t, const char *name);
/* Returns the user a unix peer with this uid and gid maps to: the user
 * with uid=uid, else the one with gid=gid; borrowed from t, or NULL. */
const users_user *users_find_peer(const users_table *t, uid_t uid, gid_t gid);

/* Returns the user's name (borrowed). */
const char *users_user_name(const users_user *u);
/* Returns the user's rules (borrowed). */
const acl_rules *users_user_rules(const users_user *u);
/* Returns true when the user has a password (its hash is not `-`). */
bool users_user_has_password(const users_user *u);
/* Returns the line of the file that defined the user. */
unsigned users_user_line(const users_user *u);

/* ---- passwords ---- */

/* Checks password against u's hash (slow: ~15 ms of CPU by design).
 * Returns 0 when it matches, -EACCES when it does not or u has no
 * password, -ENOMEM or -EINVAL (a password over USERS_PASSWORD_MAX). */
int users_verify(const users_user *u, const char *password);
/* Authenticates name/password against t: *out (borrowed from t) is set
 * on success.  An unknown name costs the same hashing as a known one, so
 * that the answer's timing does not tell which names exist.  Returns 0,
 * -EACCES (unknown user, no password, wrong password) or -ENOMEM. */
int users_authenticate(const users_table *t, const char *name,
                       const char *password, const users_user **out);
/* Hashes pw with yescrypt and a fresh random salt into out (outlen bytes;
 * USERS_HASH_MAX is enough).  Returns 0, -EINVAL (empty password or over
 * USERS_PASSWORD_MAX), -ENOSPC (out too small) or -EIO (libcrypt failed). */
int users_hash_password(const char *pw, char *out, size_t outlen);
/* Reads one password line from f into buf (len bytes), without its LF or
 * CRLF.  Returns 0, -EINVAL (empty), -E2BIG (does not fit), -EILSEQ (a NUL
 * byte) or -EIO (a read error). */
int users_read_password(FILE *f, char *buf, size_t len);

/* ---- the current table, swapped on reload ---- */

/* Returns a new, empty slot (no table: users not configured), or NULL. */
users_slot *users_slot_new(void);
/* Frees the slot and drops its reference to the current table. */
void users_slot_free(users_slot *s);
/* Loads path and, when it parses, makes it the current table (the old one
 * lives on while sessions hold references).  Returns 0, or a negative errno
 * with err filled, the current table unchanged. */
int users_slot_load(users_slot *s, const char *path, char *err, size_t errlen);
/* Returns a new reference to the current table, or NULL when none was
 * loaded.  Release it with users_unref. */
users_table *users_slot_get(users_slot *s);
/* Returns the generation of the current table (0: none); it grows by one
 * on each successful load. */
uint64_t users_slot_gen(users_slot *s);

#endif /* CHAND_USERS_H */
