/*
 * notify.h - systemd's readiness protocol (sd_notify(3)) without
 * libsystemd: one datagram of "KEY=VALUE\n" lines sent to the AF_UNIX
 * socket named by $NOTIFY_SOCKET.  systemd sets that variable for
 * Type=notify services; elsewhere it is unset and every call is a no-op.
 */
#ifndef CHAND_NOTIFY_H
#define CHAND_NOTIFY_H

/* Sends state ("READY=1", "STOPPING=1", ...) to $NOTIFY_SOCKET.  Returns
 * 1 when sent, 0 when there is no NOTIFY_SOCKET, or a negative errno
 * (the caller logs it; the daemon keeps running). */
int notify_send(const char *state);

/* printf-style notify_send. */
int notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Returns CLOCK_MONOTONIC in microseconds, for MONOTONIC_USEC=. */
unsigned long long notify_monotonic_usec(void);

#endif /* CHAND_NOTIFY_H */
