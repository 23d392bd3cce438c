/*
 * signals.h - the service side of the I/O thread's event loop: SIGHUP
 * reload, the metrics server's lifetime, and the readiness notifications
 * (READY/STOPPING/RELOADING) sent to the service manager.  server.c calls
 * these at the matching points; SIGTERM/SIGINT (the drain) stay in
 * server.c.
 */
#ifndef CHAND_SIGNALS_H
#define CHAND_SIGNALS_H

#include <stddef.h>

struct event_base;

/* Adds the SIGHUP event and starts the metrics server on base (I/O
 * thread's; the server's settings in srv_conf).  Returns 0, or -1 with a
 * message in err. */
int sig_attach(struct event_base *base, char *err, size_t errlen);
/* Frees what sig_attach made (before the base is freed). */
void sig_detach(void);
/* Tells the service manager the daemon is ready (listening), with port. */
void sig_ready(int port);
/* Tells the service manager the daemon is stopping. */
void sig_stopping(void);
/* Returns the listening socket systemd passed (socket activation:
 * LISTEN_PID is this process and LISTEN_FDS >= 1; the first, fd 3), or
 * -1 when there is none.  Unsets the variables (the socket is ours). */
int sig_activation_fd(void);
/* Reloads the settings now, as SIGHUP does (I/O thread).  Returns 0, or
 * -1 when the file was bad and the old settings stay. */
int sig_reload(void);

#endif /* CHAND_SIGNALS_H */
