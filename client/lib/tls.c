/*
 * tls.c - libchand's ways to reach a server other than plain TCP: TLS
 * over the connection's socket (OpenSSL 3: the server's certificate is
 * verified against tls_ca or the system's CAs and its name, a client
 * certificate when given), the I/O both kinds share (chand__send,
 * chand__recv), the connect options (chand_options_*), and the client
 * context and SSL that both the blocking and the asynchronous API use.
 *
 * The socket stays non-blocking: OpenSSL's "want read / want write" is
 * passed up as EAGAIN with the event to wait for, and call.c polls with
 * the call's deadline as it does for TCP.
 */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* ------------------------------------------------------------------ */
/* Options                                                            */
/* ------------------------------------------------------------------ */

chand_options *chand_options_new(void)
{
    return calloc(1, sizeof(chand_options));
}

static void opt_free_str(char **p)
{
    if (*p)
        explicit_bzero(*p, strlen(*p));
    free(*p);
    *p = NULL;
}

void chand__options_clear(chand_options *o)
{
    opt_free_str(&o->user);
    opt_free_str(&o->password);
    opt_free_str(&o->tls_ca);
    opt_free_str(&o->tls_cert);
    opt_free_str(&o->tls_key);
    opt_free_str(&o->tls_servername);
    opt_free_str(&o->failover_ms);
}

void chand_options_free(chand_options *o)
{
    if (!o)
        return;
    chand__options_clear(o);
    free(o);
}

/* Returns the field of o named key, or NULL. */
static char **opt_field(chand_options *o, const char *key)
{
    if (!strcmp(key, "user"))
        return &o->user;
    if (!strcmp(key, "password"))
        return &o->password;
    if (!strcmp(key, "tls_ca"))
        return &o->tls_ca;
    if (!strcmp(key, "tls_cert"))
        return &o->tls_cert;
    if (!strcmp(key, "tls_key"))
        return &o->tls_key;
    if (!strcmp(key, "tls_servername"))
        return &o->tls_servername;
    if (!strcmp(key, "failover_ms"))
        return &o->failover_ms;
    return NULL;
}

int chand_options_set(chand_options *o, const char *key, const char *value)
{
    char **f, *v = NULL;

    if (!o || !key || !(f = opt_field(o, key)))
        return CHAND_EARG;
    if (value && !(v = strdup(value)))
        return CHAND_ENOMEM;
    opt_free_str(f);
    *f = v;
    return 0;
}

int chand__options_copy(chand_options *dst, const chand_options *o)
{
    static const char *const keys[] = {
        "user",    "password",       "tls_ca",     "tls_cert",
        "tls_key", "tls_servername", "failover_ms"};

    memset(dst, 0, sizeof *dst);
    if (!o)
        return 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char *v = *opt_field((chand_options *)o, keys[i]);
        if (v && chand_options_set(dst, keys[i], v) != 0) {
            chand__options_clear(dst);
            return CHAND_ENOMEM;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* TLS                                                                */
/* ------------------------------------------------------------------ */

/* Fills err with OpenSSL's last error after what; returns code. */
static int tls_err(chand_error *err, int code, const char *what)
{
    char buf[200] = "";
    unsigned long e = ERR_get_error();

    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return chand__seterr(err, code, 0, "", "TLS %s%s%s", what,
                         buf[0] ? ": " : "", buf);
}

int chand__tls_ctx_new(const chand_options *o, void **out, chand_error *err)
{
    SSL_CTX *ctx;

    *out = NULL;
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return tls_err(err, CHAND_ENOMEM, "context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o->tls_ca ? SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL) != 1
                  : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        SSL_CTX_free(ctx);
        return tls_err(err, CHAND_ECONNECT,
                       o->tls_ca ? o->tls_ca : "system CAs");
    }
    if (o->tls_cert || o->tls_key) {
        const char *cert = o->tls_cert, *key = o->tls_key;
        if (!cert || !key) {
            SSL_CTX_free(ctx);
            return chand__seterr(err, CHAND_EARG, 0, "",
                                 "TLS: a client certificate needs both "
                                 "tls_cert and tls_key");
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            SSL_CTX_free(ctx);
            return tls_err(err, CHAND_ECONNECT, cert);
        }
    }
    *out = ctx;
    return 0;
}

void chand__tls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

void *chand__tls_ssl_new(void *ctx, const chand_options *o, const char *host,
                         chand_error *err)
{
    const char *name = o->tls_servername ? o->tls_servername : host;
    SSL *ssl = SSL_new(ctx);

    if (!ssl) {
        tls_err(err, CHAND_ENOMEM, "session");
        return NULL;
    }
    /* The certificate must name the host we asked for: an IP address
     * is checked against its IP SANs, a name against its DNS names. */
    if (SSL_set1_host(ssl, name) != 1) {
        SSL_free(ssl);
        tls_err(err, CHAND_ECONNECT, "host name");
        return NULL;
    }
    SSL_set_tlsext_host_name(ssl, name);
    return ssl;
}

int chand__tls_verify_error(void *ssl, chand_error *err)
{
    long v = SSL_get_verify_result(ssl);

    if (v != X509_V_OK)
        return chand__seterr(err, CHAND_ECONNECT, 0, "",
                             "TLS: the server's certificate: %s",
                             X509_verify_cert_error_string(v));
    return tls_err(err, CHAND_ECONNECT, "handshake");
}

int chand__tls_start(chand_conn *c, int64_t deadline)
{
    SSL *ssl;
    int rc;

    /* The context lives as long as c: reconnects reuse it. */
    if (!c->ssl_ctx &&
        (rc = chand__tls_ctx_new(&c->opts, &c->ssl_ctx, &c->err)) < 0)
        return rc;
    ssl = chand__tls_ssl_new(c->ssl_ctx, &c->opts, c->rt.host, &c->err);
    if (!ssl)
        return c->err.code;
    c->ssl = ssl;
    SSL_set_fd(ssl, c->fd);
    for (;;) {
        int r = SSL_connect(ssl), e;
        short want;
        if (r == 1)
            return 0;
        e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            want = POLLIN;
        else if (e == SSL_ERROR_WANT_WRITE)
            want = POLLOUT;
        else
            return chand__tls_verify_error(ssl, &c->err);
        r = chand__poll(c->fd, want, deadline);
        if (r <= 0)
            return chand__seterr(
                &c->err, r == 0 ? CHAND_ETIMEOUT : CHAND_ECONNECT, 0, "",
                "TLS handshake: %s", r == 0 ? "timed out" : strerror(errno));
    }
}

void chand__tls_drop(chand_conn *c, bool all)
{
    if (c->ssl) {
        if (c->fd >= 0)
            SSL_shutdown(c->ssl); /* close_notify; no wait for the peer's */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (all && c->ssl_ctx) {
        SSL_CTX_free(c->ssl_ctx);
        c->ssl_ctx = NULL;
    }
    ERR_clear_error();
}

/* Maps an SSL_read/SSL_write result r to the I/O contract. */
static ssize_t tls_io(chand_conn *c, int r, short *want)
{
    int e;

    if (r > 0)
        return r;
    e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = POLLIN;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want = POLLOUT;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* close_notify: a clean close */
    case SSL_ERROR_SYSCALL:
        if (errno == 0 || errno == EAGAIN)
            return 0; /* the peer closed without close_notify */
        return -1;
    default:
        errno = EPROTO;
        return -1;
    }
}

ssize_t chand__send(chand_conn *c, const void *buf, size_t len, short *want)
{
    *want = POLLOUT;
    if (c->ssl) {
        errno = 0;
        return tls_io(
            c, SSL_write(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len),
            want);
    }
    return send(c->fd, buf, len, MSG_NOSIGNAL);
}

ssize_t chand__recv(chand_conn *c, void *buf, size_t len, short *want)
{
    *want = POLLIN;
    if (c->ssl) {
        errno = 0;
        return tls_io(
            c, SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len),
            want);
    }
    return recv(c->fd, buf, len, 0);
}
