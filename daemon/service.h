/*
 * service.h - chand as a system service: readiness notifications to the
 * service manager (sd_notify), the socket systemd passed (socket
 * activation), and the reload that SIGHUP asks for.  main.c calls these
 * at the matching points.
 */
#ifndef CHAND_SERVICE_H
#define CHAND_SERVICE_H

/* Tells the service manager the daemon is ready (listening), with port. */
void svc_ready(int port);
/* Tells the service manager the daemon is stopping. */
void svc_stopping(void);
/* Returns the listening socket systemd passed (socket activation:
 * LISTEN_PID is this process and LISTEN_FDS >= 1; the first, fd 3), or
 * -1 when there is none.  Unsets the variables (the socket is ours). */
int svc_activation_fd(void);
/* Stores up to max sockets systemd passed (fd 3 onwards) in fds and
 * returns how many (0: none).  Unsets the variables. */
int svc_activation_fds(int *fds, int max);
/* Reloads the settings into srv_conf now, as SIGHUP does (io[0]).
 * Returns 0, or -1 when the file was bad and the old settings stay. */
int svc_reload(void);

#endif /* CHAND_SERVICE_H */
