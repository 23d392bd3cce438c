/*
 * tls.h - the daemon's TLS: an OpenSSL 3 server context built from
 * tls_cert, tls_key and optionally tls_ca, swapped atomically on reload,
 * the peer certificate's CN, and a libevent bufferevent_openssl set up
 * with its known pitfalls handled.
 *
 * This module owns the SSL_CTX settings (TLS 1.2 at least, no
 * renegotiation, client certificates required when tls_ca is set), their
 * reload, and the way a TLS connection is wrapped.  It has no listener
 * and no sessions.
 *
 * The pitfalls of bufferevent_openssl with OpenSSL 3, and what is done:
 *   - A peer that closes without close_notify arrives as an error, not as
 *     EOF: OpenSSL 3 reports SSL_ERROR_SSL ("unexpected eof while
 *     reading"), which libevent 2.1.12 does not recognise as a dirty
 *     shutdown: allowing dirty shutdowns alone is not enough (test_tls
 *     shows BEV_EVENT_ERROR).  The context sets
 *     SSL_OP_IGNORE_UNEXPECTED_EOF, which makes it EOF, and the bufferevent
 *     also allows dirty shutdowns, for libevents that know OpenSSL 3.
 *     (Safe here: the protocol is framed by lines, so a truncated tail is
 *     an unterminated line, never a whole request.)
 *   - SIGPIPE: OpenSSL writes with write(2), not send(MSG_NOSIGNAL); the
 *     daemon must ignore SIGPIPE (main.c already does).
 *   - A handshake needs a deadline, or a peer that connects and says
 *     nothing holds a connection forever: tls_bufferevent_accept arms the
 *     read and write timeouts for the handshake; the event callback gets
 *     BEV_EVENT_TIMEOUT (then close) or BEV_EVENT_CONNECTED (then call
 *     tls_handshake_done to clear them).
 *   - Freeing the bufferevent frees the SSL (BEV_OPT_CLOSE_ON_FREE) without
 *     a close_notify; call tls_close_notify first for a clean close.
 *
 * Integration:
 *   - conf keys tls_port, tls_cert, tls_key, tls_ca (optional); at
 *     start-up tls_server_new (on error: log err, refuse to start); on
 *     SIGHUP tls_server_reload (on error: log err as a warning; the old
 *     certificates stay in force).
 *   - the TLS listener's accept: ssl = tls_server_ssl(srv), then
 *     bev = tls_bufferevent_accept(base, fd, ssl, BEV_OPT_CLOSE_ON_FREE |
 *     ..., TLS_HANDSHAKE_MS), then the session's usual callbacks.
 *   - on BEV_EVENT_CONNECTED: tls_handshake_done(bev); with tls_ca, name
 *     the user with tls_peer_cn(bufferevent_openssl_get_ssl(bev), ...)
 *     and users_find.
 *
 * Thread safety: tls_server_* may be called from any thread (a mutex
 * guards the current context; each SSL holds its own reference to the
 * context it was made from, so a reload never pulls one from under a
 * live connection).
 */
#ifndef CHAND_TLS_H
#define CHAND_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>

#define TLS_HANDSHAKE_MS 5000 /* default handshake deadline */

/* Where the certificates are.  ca may be NULL (no client certificates). */
typedef struct tls_conf {
    const char *cert; /* PEM: the server certificate, then its chain */
    const char *key;  /* PEM: its private key (unencrypted) */
    const char *ca;   /* PEM: CAs that sign client certificates, or NULL */
} tls_conf;

typedef struct tls_server tls_server;

/* Builds a server from c into *out.  Returns 0, or -EINVAL / -ENOMEM with
 * err filled ("tls_cert /path: ...": which setting, which file, and
 * OpenSSL's reason). */
int tls_server_new(const tls_conf *c, tls_server **out, char *err,
                   size_t errlen);
/* Builds a new context from c and makes it current; on error (err filled
 * as for tls_server_new) the current context stays.  Returns 0 or a
 * negative errno. */
int tls_server_reload(tls_server *s, const tls_conf *c, char *err,
                      size_t errlen);
/* Frees the server and its reference to the current context (SSLs made
 * from it keep theirs). */
void tls_server_free(tls_server *s);
/* Returns a new reference to the current context (SSL_CTX_free it). */
SSL_CTX *tls_server_ctx(tls_server *s);
/* Returns a new SSL in server mode from the current context (the caller
 * owns it; a bufferevent made with BEV_OPT_CLOSE_ON_FREE takes it), or
 * NULL. */
SSL *tls_server_ssl(tls_server *s);
/* Returns true when the current context requires client certificates. */
bool tls_server_requires_cert(tls_server *s);

/* Copies the verified peer certificate's subject CN into out (outlen
 * bytes, NUL-terminated).  Returns 0; -ENOENT (no certificate, or not
 * verified); -EINVAL (no CN, several CNs, or a CN with a NUL byte or
 * control character); -ENAMETOOLONG (it does not fit). */
int tls_peer_cn(const SSL *ssl, char *out, size_t outlen);

/* Returns a new bufferevent doing the server side of TLS over fd with ssl
 * (stolen when options has BEV_OPT_CLOSE_ON_FREE), dirty shutdowns
 * reported as EOF, and handshake_ms (> 0) as the deadline of the
 * handshake.  Returns NULL on failure (then ssl is still the caller's). */
struct bufferevent *tls_bufferevent_accept(struct event_base *base,
                                           evutil_socket_t fd, SSL *ssl,
                                           int options, int handshake_ms);
/* Ends the handshake deadline (call on BEV_EVENT_CONNECTED): clears the
 * read and write timeouts. */
void tls_handshake_done(struct bufferevent *bev);
/* Encrypts and writes what it can of buf (drained by what went) straight
 * to bev's socket, when bev's own output is empty and its handshake done:
 * the bufferevent would first add its write event and delete it once
 * drained (two epoll_ctl calls per answer, more than the write).  Stops
 * at the first SSL_write that does not complete; the caller then hands
 * the rest of buf to the bufferevent, whose first chain holds at least the
 * bytes of that attempt (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER lets it retry
 * them from there).  Returns the bytes written.  bev's I/O thread. */
size_t tls_write_now(struct bufferevent *bev, struct evbuffer *buf);
/* Moves up to max bytes of plaintext that OpenSSL already holds (records
 * read ahead with the request that woke the session) into bev's input.
 * The context reads ahead, so one read(2) takes every record the socket
 * has (without it: two reads per record, its header and its body); but
 * the bufferevent only asks OpenSSL for more while the record it is on
 * has bytes left, and the records behind it would wait for the socket to
 * become readable again, which it may never do.  Call after each turn of
 * requests while reading is on.  Returns the bytes moved.  bev's I/O
 * thread. */
size_t tls_read_pending(struct bufferevent *bev, size_t max);
/* Sends close_notify on bev's SSL, without waiting for the peer's (call
 * before freeing for a clean close). */
void tls_close_notify(struct bufferevent *bev);

#endif /* CHAND_TLS_H */
