/*
 * tls.c - the TLS server context, its reload, the peer's CN, and the
 * bufferevent_openssl wrapping (see tls.h for the pitfalls handled).
 */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/x509.h>

struct tls_server {
    pthread_mutex_t mu;
    SSL_CTX *ctx; /* current; one reference is ours */
    bool requires_cert;
};

/* Fills err with "what path: reason", OpenSSL's reason taken from its
 * error queue (which is then emptied); returns -EINVAL. */
static int tls_fail(char *err, size_t errlen, const char *what,
                    const char *path)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256] = "unknown error";

    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    snprintf(err, errlen, "%s %s: %s", what, path ? path : "(unset)", reason);
    return -EINVAL;
}

/* Builds a context from c; returns it (a new reference) or NULL with err
 * filled. */
static SSL_CTX *tls_ctx_build(const tls_conf *c, char *err, size_t errlen)
{
    SSL_CTX *ctx;
    STACK_OF(X509_NAME) * names;

    ERR_clear_error();
    if (!c || !c->cert || !*c->cert) {
        snprintf(err, errlen, "tls_cert is not set");
        return NULL;
    }
    if (!c->key || !*c->key) {
        snprintf(err, errlen, "tls_key is not set");
        return NULL;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_fail(err, errlen, "tls:", "SSL_CTX_new");
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        tls_fail(err, errlen, "tls:", "TLS 1.2");
        goto out_free;
    }
    /* IGNORE_UNEXPECTED_EOF: a peer's close without close_notify is EOF
     * (tls.h).  Renegotiation is a DoS lever and nothing here needs it. */
    SSL_CTX_set_options(
        ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION |
                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    /* libevent hands SSL_write a buffer that may move between retries and
     * takes partial writes; idle connections give their buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_RELEASE_BUFFERS);
    /* One read(2) for every record the socket holds, not two per record
     * (the session pulls what the bufferevent leaves: tls_read_pending). */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
        tls_fail(err, errlen, "tls_cert", c->cert);
        goto out_free;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL checks the key against the certificate as it loads it;
         * say so in the settings' words. */
        if (ERR_GET_REASON(ERR_peek_last_error()) ==
            X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            snprintf(err, errlen, "tls_key %s does not match tls_cert %s",
                     c->key, c->cert);
        } else {
            tls_fail(err, errlen, "tls_key", c->key);
        }
        goto out_free;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "tls_key %s does not match tls_cert %s", c->key,
                 c->cert);
        goto out_free;
    }
    if (c->ca && *c->ca) {
        if (SSL_CTX_load_verify_locations(ctx, c->ca, NULL) != 1) {
            tls_fail(err, errlen, "tls_ca", c->ca);
            goto out_free;
        }
        names = SSL_load_client_CA_file(c->ca);
        if (!names) {
            tls_fail(err, errlen, "tls_ca", c->ca);
            goto out_free;
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* steals names */
        SSL_CTX_set_verify(
            ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    /* Required for session resumption with client certificates (OpenSSL
     * refuses to resume a session without one). */
    if (SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"chand",
                                       5) != 1) {
        tls_fail(err, errlen, "tls:", "session id context");
        goto out_free;
    }
    return ctx;

out_free:
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_server_new(const tls_conf *c, tls_server **out, char *err,
                   size_t errlen)
{
    tls_server *s;

    *out = NULL;
    s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "tls: out of memory");
        return -ENOMEM;
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        snprintf(err, errlen, "tls: cannot make a mutex");
        free(s);
        return -ENOMEM;
    }
    s->ctx = tls_ctx_build(c, err, errlen);
    if (!s->ctx) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return -EINVAL;
    }
    s->requires_cert = c->ca && *c->ca;
    *out = s;
    return 0;
}

int tls_server_reload(tls_server *s, const tls_conf *c, char *err,
                      size_t errlen)
{
    SSL_CTX *ctx = tls_ctx_build(c, err, errlen), *old;

    if (!ctx)
        return -EINVAL;
    pthread_mutex_lock(&s->mu);
    old = s->ctx;
    s->ctx = ctx;
    s->requires_cert = c->ca && *c->ca;
    pthread_mutex_unlock(&s->mu);
    SSL_CTX_free(old);
    return 0;
}

void tls_server_free(tls_server *s)
{
    if (!s)
        return;
    SSL_CTX_free(s->ctx);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

SSL_CTX *tls_server_ctx(tls_server *s)
{
    SSL_CTX *ctx;
    pthread_mutex_lock(&s->mu);
    ctx = s->ctx;
    SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&s->mu);
    return ctx;
}

SSL *tls_server_ssl(tls_server *s)
{
    SSL *ssl;
    pthread_mutex_lock(&s->mu);
    ssl = SSL_new(s->ctx); /* takes its own reference to the context */
    pthread_mutex_unlock(&s->mu);
    return ssl;
}

bool tls_server_requires_cert(tls_server *s)
{
    bool r;
    pthread_mutex_lock(&s->mu);
    r = s->requires_cert;
    pthread_mutex_unlock(&s->mu);
    return r;
}

int tls_peer_cn(const SSL *ssl, char *out, size_t outlen)
{
    X509 *cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    X509_NAME *subj;
    ASN1_STRING *data;
    unsigned char *utf8 = NULL;
    int idx, n, rc = 0;

    if (!cert || SSL_get_verify_result(ssl) != X509_V_OK)
        return -ENOENT;
    subj = X509_get_subject_name(cert);
    idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx < 0)
        return -EINVAL;
    /* Two CNs would make the name ambiguous. */
    if (X509_NAME_get_index_by_NID(subj, NID_commonName, idx) >= 0)
        return -EINVAL;
    data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
    n = ASN1_STRING_to_UTF8(&utf8, data);
    if (n < 0)
        return -EINVAL;
    for (int i = 0; i < n && rc == 0; i++)
        if (utf8[i] < 0x20 || utf8[i] == 0x7f)
            rc = -EINVAL; /* NUL bytes included */
    if (rc == 0 && n == 0)
        rc = -EINVAL;
    if (rc == 0 && (size_t)n >= outlen)
        rc = -ENAMETOOLONG;
    if (rc == 0) {
        memcpy(out, utf8, (size_t)n);
        out[n] = '\0';
    }
    OPENSSL_free(utf8);
    return rc;
}

struct bufferevent *tls_bufferevent_accept(struct event_base *base,
                                           evutil_socket_t fd, SSL *ssl,
                                           int options, int handshake_ms)
{
    struct bufferevent *bev;
    struct timeval tv;

    bev = bufferevent_openssl_socket_new(base, fd, ssl,
                                         BUFFEREVENT_SSL_ACCEPTING, options);
    if (!bev)
        return NULL;
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    if (handshake_ms <= 0)
        handshake_ms = TLS_HANDSHAKE_MS;
    tv.tv_sec = handshake_ms / 1000;
    tv.tv_usec = (handshake_ms % 1000) * 1000;
    bufferevent_set_timeouts(bev, &tv, &tv);
    return bev;
}

void tls_handshake_done(struct bufferevent *bev)
{
    bufferevent_set_timeouts(bev, NULL, NULL);
}

/* One TLS record's worth of plaintext. */
#define TLS_RECORD_MAX 16384

size_t tls_write_now(struct bufferevent *bev, struct evbuffer *buf)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    size_t done = 0;

    if (!ssl || !SSL_is_init_finished(ssl) ||
        evbuffer_get_length(bufferevent_get_output(bev)) != 0)
        return 0;
    while (evbuffer_get_length(buf) > 0) {
        size_t n = evbuffer_get_length(buf);
        unsigned char *p;
        int r;

        if (n > TLS_RECORD_MAX)
            n = TLS_RECORD_MAX;
        /* Contiguous, so that a retry from the bufferevent's first chain
         * covers at least these n bytes. */
        p = evbuffer_pullup(buf, (ev_ssize_t)n);
        if (!p)
            break;
        r = SSL_write(ssl, p, (int)n);
        if (r <= 0) {
            /* The bufferevent retries (want write) or meets the error
             * itself; the error queue must not outlive this call. */
            ERR_clear_error();
            break;
        }
        evbuffer_drain(buf, (size_t)r);
        done += (size_t)r;
    }
    return done;
}

size_t tls_read_pending(struct bufferevent *bev, size_t max)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t got = 0;

    if (!ssl || !SSL_is_init_finished(ssl))
        return 0;
    while (got < max && SSL_has_pending(ssl)) {
        struct evbuffer_iovec v;
        size_t want = max - got;
        int r;

        if (want > TLS_RECORD_MAX)
            want = TLS_RECORD_MAX;
        if (evbuffer_reserve_space(in, (ev_ssize_t)want, &v, 1) < 1)
            break;
        if (v.iov_len > want)
            v.iov_len = want;
        r = SSL_read(ssl, v.iov_base, (int)v.iov_len);
        if (r <= 0) {
            /* A partial record (the rest comes with the socket's next
             * readiness, and the bufferevent reads it), or an end the
             * bufferevent meets itself on its next read. */
            ERR_clear_error();
            break;
        }
        v.iov_len = (size_t)r;
        if (evbuffer_commit_space(in, &v, 1) != 0)
            break;
        got += (size_t)r;
    }
    return got;
}

void tls_close_notify(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl) {
        SSL_shutdown(ssl);
        ERR_clear_error();
    }
}
