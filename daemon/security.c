/*
 * security.c - who a session is and what it may do: the users table in
 * force (users.h, reloaded on SIGHUP), the TLS certificates (tls.h), the
 * failure limiter (authlimit.h), protected mode, a session's identity (a
 * unix peer's credentials, a TLS client certificate's CN, or auth {user,
 * password}), the pre-authentication deadline and line limit, the check
 * of every request against the user's rules (acl.h) and the filtering of
 * list and runtime.dump.
 *
 * Without users_file nothing here changes a request's path but one test
 * of sec_on.  With it, a session starts unauthenticated: only hello, auth
 * and ping run (anything else: reason unauthenticated), its lines may be
 * at most SEC_PREAUTH_LINE bytes, and it must authenticate within
 * auth_timeout_ms or be closed.  A password is verified on a goroutine
 * (yescrypt costs ~15 ms of CPU: never on the I/O thread), after the delay
 * authlimit gives the peer, and only once hashgate.h gives it a slot (a
 * flood of attempts cannot take every P); meanwhile the session's input
 * waits (auth_busy), so a request pipelined behind auth runs as the new
 * user.  Every outcome is counted (srv_count_sec) for runtime.stats and
 * /metrics.
 */
#include "server.h"
#include "acl.h"
#include "authlimit.h"
#include "hashgate.h"
#include "tls.h"
#include "users.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

/* Longest line before authentication: hello and auth fit easily. */
#define SEC_PREAUTH_LINE 4096

bool sec_on;
static users_slot *sec_users;
static authlimit *sec_al;
static tls_server *sec_tlss;
static bool sec_anon_warned;

/* ------------------------------------------------------------------ */
/* Server-wide                                                        */
/* ------------------------------------------------------------------ */

/* Loads c's users file into the slot; logs the privacy warning. */
static int sec_load_users(const conf *c, char *err, size_t errlen)
{
    char warn[512];

    users_table *t;

    if (users_slot_load(sec_users, c->users_file, err, errlen) != 0)
        return -1;
    t = users_slot_get(sec_users);
    atomic_store(&srv_stat.users, (int64_t)users_count(t));
    users_unref(t);
    if (users_file_private(c->users_file, warn, sizeof warn) == 1)
        log_warn("%s", warn);
    return 0;
}

int sec_init(const conf *c, char *err, size_t errlen)
{
    tls_conf tc = {c->tls_cert, c->tls_key, c->tls_ca[0] ? c->tls_ca : NULL};

    sec_users = users_slot_new();
    sec_al = authlimit_new(NULL);
    if (!sec_users || !sec_al ||
        hashgate_init(c->auth_hash_slots, c->auth_hash_queue) != 0) {
        snprintf(err, errlen, "out of memory");
        goto out_free;
    }
    if (c->users_file[0]) {
        if (sec_load_users(c, err, errlen) != 0)
            goto out_free;
        sec_on = true;
        users_table *t = users_slot_get(sec_users);
        log_info("users: %zu from %s", users_count(t), c->users_file);
        users_unref(t);
    }
    if (c->tls_cert[0] || c->tls_key[0] || c->tls_ca[0]) {
        if (!c->tls_cert[0] || !c->tls_key[0]) {
            snprintf(err, errlen, "TLS needs both tls_cert and tls_key");
            goto out_free;
        }
        if (tls_server_new(&tc, &sec_tlss, err, errlen) != 0)
            goto out_free;
        if (c->tls_port == 0)
            log_warn("tls_cert is set but tls_port is 0: no TLS listener");
    } else if (c->tls_port != 0) {
        snprintf(err, errlen, "tls_port %d needs tls_cert and tls_key",
                 c->tls_port);
        goto out_free;
    }
    return 0;

out_free:
    sec_fini();
    return -1;
}

void sec_reload(const conf *c)
{
    char err[600];
    tls_conf tc = {c->tls_cert, c->tls_key, c->tls_ca[0] ? c->tls_ca : NULL};

    if (strcmp(c->users_file, srv_conf.users_file) != 0)
        log_warn("reload: users_file changed to '%s': needs a restart",
                 c->users_file);
    else if (sec_on && sec_load_users(c, err, sizeof err) != 0)
        log_warn("reload: users file not reloaded, the old one stays: %s", err);
    else if (sec_on) {
        users_table *t = users_slot_get(sec_users);
        log_info("reload: users: %zu from %s", users_count(t), c->users_file);
        users_unref(t);
    }
    if (sec_tlss && tls_server_reload(sec_tlss, &tc, err, sizeof err) != 0)
        log_warn("reload: TLS certificates not reloaded, the old ones "
                 "stay: %s",
                 err);
    else if (sec_tlss)
        log_info("reload: TLS certificates reloaded");
}

void sec_fini(void)
{
    users_slot_free(sec_users);
    sec_users = NULL;
    authlimit_free(sec_al);
    sec_al = NULL;
    tls_server_free(sec_tlss);
    sec_tlss = NULL;
    hashgate_fini();
    atomic_store(&srv_stat.users, 0);
    sec_on = false;
}

bool sec_tls_on(void)
{
    return sec_tlss != NULL;
}

struct tls_server *sec_tls(void)
{
    return sec_tlss;
}

/* Returns true for a loopback address (127/8, ::1, ::ffff:127/104). */
static bool sec_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >>
                24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a =
            &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) ||
               (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return sa->sa_family == AF_UNIX;
}

int sec_protect_check(const struct sockaddr *sa, unsigned salen,
                      const char *what, char *err, size_t errlen)
{
    char host[NI_MAXHOST] = "?";

    if (sec_is_loopback(sa) || sec_on)
        return 0;
    if (getnameinfo(sa, (socklen_t)salen, host, sizeof host, NULL, 0,
                    NI_NUMERICHOST) != 0)
        snprintf(host, sizeof host, "?");
    if (srv_conf.allow_anonymous) {
        if (!sec_anon_warned)
            log_warn("protected mode off (allow_anonymous): anyone who "
                     "reaches %s (%s) can use and change every object",
                     host, what);
        sec_anon_warned = true;
        return 0;
    }
    snprintf(err, errlen,
             "protected mode: refusing to serve %s (%s), a non-loopback "
             "address, without users: anyone who reaches it could use and "
             "change every object.  Set users_file (chand.conf(5), "
             "\"Securing chand\" in the README), or bind to 127.0.0.1, or "
             "start with --allow-anonymous if the network is trusted",
             host, what);
    return -1;
}

int sec_hash_password_main(void)
{
    char pw[USERS_PASSWORD_MAX + 2], hash[USERS_HASH_MAX];
    int rc = users_read_password(stdin, pw, sizeof pw);

    if (rc == 0)
        rc = users_hash_password(pw, hash, sizeof hash);
    explicit_bzero(pw, sizeof pw);
    if (rc != 0) {
        fprintf(stderr, "chand: --hash-password: %s\n",
                rc == -EINVAL   ? "empty password (one line on stdin)"
                : rc == -E2BIG  ? "password too long"
                : rc == -EILSEQ ? "a NUL byte in the password"
                                : strerror(-rc));
        return 1;
    }
    printf("%s\n", hash);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* A session's identity                                               */
/* ------------------------------------------------------------------ */

/* Makes u (borrowed from t, a new reference that s takes) s's user. */
static void sec_set_user(sess *s, users_table *t, const users_user *u)
{
    users_table *old = s->users;

    s->users = t;
    s->user = u;
    atomic_store_explicit(&s->authed, true, memory_order_release);
    users_unref(old);
}

static void sec_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    sess *s = arg;
    (void)fd;
    (void)what;

    if (s->ended || atomic_load_explicit(&s->authed, memory_order_acquire))
        return;
    log_warn("session %llu from %s: not authenticated within %d ms: "
             "closing",
             (unsigned long long)s->id, s->peer, srv_conf.auth_timeout_ms);
    srv_count_sec(SRV_REFUSED_AUTH_TIMEOUT);
    sess_retain(s);
    sess__fail_close(s, PROTO_R_UNAUTHENTICATED,
                     "not authenticated in time: closing");
    sess_release(s);
}

int sec__sess_open(sess *s, evutil_socket_t fd, const struct sockaddr *addr,
                   int alen)
{
    authlimit_key k;
    struct ucred cr;
    socklen_t crl = sizeof cr;
    bool have_cred = false;

    if (s->kind == SESS_UNIX &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) == 0) {
        have_cred = true;
        snprintf(s->peer, sizeof s->peer, "unix uid %u gid %u pid %d",
                 (unsigned)cr.uid, (unsigned)cr.gid, (int)cr.pid);
        authlimit_key_uid(cr.uid, &k);
        memcpy(s->alkey, k.b, sizeof s->alkey);
        s->has_alkey = true;
    } else {
        char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";
        if (getnameinfo(addr, (socklen_t)alen, host, sizeof host, serv,
                        sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
            snprintf(host, sizeof host, "?");
        snprintf(s->peer, sizeof s->peer, "%s port %s", host, serv);
        if (authlimit_key_sockaddr(addr, (socklen_t)alen, &k) == 0) {
            memcpy(s->alkey, k.b, sizeof s->alkey);
            s->has_alkey = true;
        }
    }
    if (!sec_on)
        return 0;
    s->users = users_slot_get(sec_users);
    if (!s->users)
        return 0;
    s->guarded = true;
    if (have_cred) {
        const users_user *u = users_find_peer(s->users, cr.uid, cr.gid);
        if (u) {
            log_info("session %llu: %s is user %s", (unsigned long long)s->id,
                     s->peer, users_user_name(u));
            s->user = u;
            atomic_store(&s->authed, true);
            return 0;
        }
    }
    s->ev_auth = evtimer_new(s->io->base, sec_deadline_cb, s);
    if (!s->ev_auth)
        return -1;
    struct timeval tv = {srv_conf.auth_timeout_ms / 1000,
                         (srv_conf.auth_timeout_ms % 1000) * 1000};
    return evtimer_add(s->ev_auth, &tv) == 0 ? 0 : -1;
}

void sec__sess_tls_ready(sess *s)
{
    char cn[USERS_NAME_MAX + 1];
    const users_user *u;
    SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
    int rc;

    if (!s->guarded || s->user || !ssl)
        return;
    rc = tls_peer_cn(ssl, cn, sizeof cn);
    if (rc != 0) {
        if (rc != -ENOENT)
            log_warn("session %llu from %s: client certificate CN "
                     "unusable: %s",
                     (unsigned long long)s->id, s->peer, strerror(-rc));
        return;
    }
    u = users_find(s->users, cn);
    if (!u) {
        log_warn("session %llu from %s: certificate CN \"%s\" is no user",
                 (unsigned long long)s->id, s->peer, cn);
        return;
    }
    log_info("session %llu from %s: certificate names user %s",
             (unsigned long long)s->id, s->peer, cn);
    s->user = u;
    atomic_store(&s->authed, true);
}

void sec__sess_close(sess *s)
{
    if (s->ev_auth)
        event_free(s->ev_auth);
    s->ev_auth = NULL;
}

void sec__sess_free(sess *s)
{
    users_unref(s->users);
    s->users = NULL;
    s->user = NULL;
}

size_t sec__max_line(const sess *s)
{
    if (s->guarded && !atomic_load_explicit(&s->authed, memory_order_acquire) &&
        srv_conf.max_line > SEC_PREAUTH_LINE)
        return SEC_PREAUTH_LINE;
    return srv_conf.max_line;
}

/* ------------------------------------------------------------------ */
/* Requests                                                           */
/* ------------------------------------------------------------------ */

int sec_check(sess *s, const proto_request *req, proto_reason *reason,
              char *why, size_t whylen)
{
    if (!s->guarded)
        return 0;
    if (!atomic_load_explicit(&s->authed, memory_order_acquire)) {
        if (acl_method_open(req->method))
            return 0;
        *reason = PROTO_R_UNAUTHENTICATED;
        srv_count_sec(SRV_REFUSED_UNAUTH);
        snprintf(why, whylen,
                 "%s: authenticate first (auth {user, "
                 "password})",
                 req->method->name);
        return -1;
    }
    if (acl_check_request(users_user_rules(s->user), req, why, whylen) == 0)
        return 0;
    *reason = PROTO_R_DENIED;
    srv_count_sec(SRV_REFUSED_DENIED);
    log_debug("session %llu (user %s): denied: %s", (unsigned long long)s->id,
              users_user_name(s->user), why);
    return -1;
}

void sec_filter(dreq *r, json_t *result)
{
    sess *s = r->s;

    if (!s || !s->guarded)
        return;
    if (!atomic_load_explicit(&s->authed, memory_order_acquire)) {
        json_object_set_new(result, "objects", json_array());
        return;
    }
    acl_filter_objects(users_user_rules(s->user), result);
}

/* ------------------------------------------------------------------ */
/* auth {user, password}, and hello's                                 */
/* ------------------------------------------------------------------ */

typedef struct sec_auth {
    char user[USERS_NAME_MAX + 1];
    char password[USERS_PASSWORD_MAX + 1];
    unsigned wait_ms;
    bool hello;
} sec_auth;

static void sec_auth_free(sec_auth *a)
{
    explicit_bzero(a, sizeof *a);
    free(a);
}

/* Lets s's input go on after an auth answered (any thread). */
static void sec_auth_resume(sess *s)
{
    atomic_store(&s->auth_busy, false);
    pthread_mutex_lock(&s->mu);
    if (!s->dead)
        event_active(s->ev_more, EV_READ, 0);
    pthread_mutex_unlock(&s->mu);
}

/* The goroutine: waits the limiter's delay, verifies, answers. */
static void sec_auth_go(dreq *r)
{
    sec_auth *a = r->ctx;
    sess *s = r->s;
    authlimit_key k;
    users_table *t;
    const users_user *u = NULL;
    int rc = -EACCES;

    memcpy(k.b, s->alkey, sizeof k.b);
    sess_retain(s);
    r->ctx = NULL;
    if (a->wait_ms) {
        srv_count_sec(SRV_AUTH_DELAYED);
        rt_sleep((int64_t)a->wait_ms * 1000000);
    }
    t = users_slot_get(sec_users);
    if (dreq_cancelled(r))
        rc = -ECANCELED; /* gone: neither a success nor a failure */
    else if (t) {
        /* Wait for a hash slot no longer than the session may stay
         * unauthenticated. */
        rc = hashgate_enter(rt_deadline_ms(srv_conf.auth_timeout_ms));
        if (rc == 0) {
            rc = users_authenticate(t, a->user, a->password, &u);
            hashgate_leave();
        } else if (rc != -ECANCELED) {
            rc = -EBUSY;
        }
    }
    if (rc == -ECANCELED) {
        users_unref(t);
        dreq_fail(r, PROTO_R_CANCELLED, "cancelled: session ended");
    } else if (rc == -EBUSY) {
        /* Not a failed attempt: the password was never checked. */
        users_unref(t);
        srv_count_sec(SRV_REFUSED_BUSY);
        log_warn("session %llu from %s: authentication refused: every "
                 "password hash slot is busy and %d attempts wait",
                 (unsigned long long)s->id, s->peer, srv_conf.auth_hash_queue);
        dreq_fail(r, PROTO_R_LIMIT,
                  "server busy verifying passwords: try again later");
    } else if (rc == 0) {
        srv_count_sec(SRV_AUTH_OK);
        if (s->has_alkey)
            authlimit_success(sec_al, &k);
        log_info("session %llu from %s: authenticated as %s",
                 (unsigned long long)s->id, s->peer, a->user);
        sec_set_user(s, t, u);
        if (a->hello)
            dreq_ok(r,
                    json_pack("{s:i, s:s, s:I, s:s}", "version", PROTO_VERSION,
                              "server", "chand " CHAND_VERSION, "session",
                              (json_int_t)dreq_sid(r), "user",
                              users_user_name(u)));
        else
            dreq_ok(r, json_pack("{s:s}", "user", users_user_name(u)));
    } else {
        unsigned next = 0, fails = 0;
        users_unref(t);
        srv_count_sec(SRV_AUTH_FAILED);
        if (s->has_alkey) {
            next = authlimit_fail(sec_al, &k, rt_now() / 1000000);
            fails = authlimit_failures(sec_al, &k, rt_now() / 1000000);
        }
        log_warn("session %llu from %s: authentication failed for user "
                 "\"%s\" (%u recent failures from there; the next attempt "
                 "waits %u ms)",
                 (unsigned long long)s->id, s->peer, a->user, fails, next);
        if (rc == -ENOMEM)
            dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        else
            dreq_fail(r, PROTO_R_UNAUTHENTICATED, "invalid user or password");
    }
    sec_auth_free(a);
    sec_auth_resume(s);
    sess_release(s);
}

/* Starts verifying user/password for r (auth, or hello when hello). */
static void sec_auth_start(dreq *r, const char *user, const char *password,
                           bool hello)
{
    sess *s = r->s;
    sec_auth *a;
    authlimit_key k;

    if (!s) {
        dreq_fail(r, PROTO_R_MISUSE, "auth needs a connection");
        return;
    }
    if (!s->guarded) {
        dreq_fail(r, PROTO_R_MISUSE,
                  "no users are configured: nothing to authenticate");
        return;
    }
    if (r->batch) {
        dreq_fail(r, PROTO_R_MISUSE, "auth cannot be part of a batch");
        return;
    }
    if (!user || !password || strlen(user) > USERS_NAME_MAX ||
        strlen(password) > USERS_PASSWORD_MAX) {
        dreq_fail(r, PROTO_R_UNAUTHENTICATED, "invalid user or password");
        return;
    }
    a = calloc(1, sizeof *a);
    if (!a) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        return;
    }
    snprintf(a->user, sizeof a->user, "%s", user);
    snprintf(a->password, sizeof a->password, "%s", password);
    a->hello = hello;
    if (s->has_alkey) {
        memcpy(k.b, s->alkey, sizeof k.b);
        a->wait_ms = authlimit_begin(sec_al, &k, rt_now() / 1000000);
    }
    if (a->wait_ms >= (unsigned)srv_conf.auth_timeout_ms) {
        log_warn("session %llu from %s: authentication refused: too many "
                 "recent failures (next try in %u ms)",
                 (unsigned long long)s->id, s->peer, a->wait_ms);
        srv_count_sec(SRV_REFUSED_LIMIT);
        sec_auth_free(a);
        dreq_fail(r, PROTO_R_LIMIT,
                  "too many failed authentications: try again later");
        return;
    }
    r->ctx = a;
    atomic_store(&s->auth_busy, true);
    if (dreq_park(r, sec_auth_go) != 0) {
        atomic_store(&s->auth_busy, false);
        sec_auth_free(a);
    }
}

void h_auth(dreq *r)
{
    sec_auth_start(r, dreq_str(r, "user"), dreq_str(r, "password"), false);
}

bool sec_hello_auth(dreq *r)
{
    const char *user = dreq_str(r, "user"), *pw = dreq_str(r, "password");

    if (!user && !pw)
        return false;
    if (!r->s || !r->s->guarded)
        return false; /* no users: credentials are not needed */
    sec_auth_start(r, user, pw, true);
    return true;
}
