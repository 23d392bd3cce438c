/*
 * notify.c - a small implementation of the sd_notify datagram, so that
 * chand runs as a Type=notify service with no libsystemd dependency.
 *
 * The protocol (systemd's sd_notify(3) and its "Notify socket" notes): the
 * service manager passes a socket address in $NOTIFY_SOCKET; a path
 * ("/run/systemd/notify") or, with a leading '@', an abstract name whose
 * first byte is NUL.  The service sends one SOCK_DGRAM datagram per state
 * change, newline-separated KEY=VALUE assignments.  systemd checks the
 * sender's credentials itself (SCM_CREDENTIALS are attached by the kernel
 * when it asks for them), so nothing else is needed.  vsock addresses
 * ("vsock:...") are not supported: chand never runs in a VM's init.
 */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int notify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    socklen_t salen;
    size_t len;
    int fd, rc;

    if (!path || !*path)
        return 0;
    len = strlen(path);
    if (path[0] != '/' && path[0] != '@')
        return -EAFNOSUPPORT;
    if (len >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, len);
    /* An abstract name is exactly len bytes long, NUL first and none
     * after; a path may carry its terminating NUL. */
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    rc = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                (struct sockaddr *)&sa, salen) < 0
             ? -errno
             : 1;
    close(fd);
    return rc;
}

int notify_sendf(const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return notify_send(buf);
}

unsigned long long notify_monotonic_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL +
           (unsigned long long)ts.tv_nsec / 1000ULL;
}
