/*
 * epoch.c - the token epoch in data_dir/EPOCH (see epoch.h).
 */
#include "epoch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"

/* Returns 0 and *e from dirfd/EPOCH (0 when absent), or -EBADMSG. */
static int epoch_read(int dirfd, uint64_t *e)
{
    char t[128], tail[64];
    ssize_t n;
    unsigned c;
    int fd = openat(dirfd, "EPOCH", O_RDONLY | O_CLOEXEC);
    char *sp;

    *e = 0;
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    n = read(fd, t, sizeof t - 1);
    close(fd);
    if (n <= 0)
        return -EBADMSG;
    t[n] = 0;
    sp = strrchr(t, ' ');
    if (!sp || sscanf(t, "chand-epoch %" SCNu64 " %8x%63s", e, &c, tail) != 2 ||
        c != crc32c(t, (size_t)(sp - t)) || t[n - 1] != '\n')
        return -EBADMSG;
    return 0;
}

int epoch_bump(const char *dir, uint64_t *epoch, char *err, size_t errlen)
{
    char t[128];
    int dirfd, fd, n, rc;
    uint64_t e;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = -errno;
        snprintf(err, errlen, "data_dir %s: cannot create: %s", dir,
                 strerror(errno));
        return rc;
    }
    dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "data_dir %s: %s", dir, strerror(errno));
        return rc;
    }
    rc = epoch_read(dirfd, &e);
    if (rc) {
        snprintf(err, errlen,
                 "%s/EPOCH is damaged: tokens could go back; restore it "
                 "from a backup or write a larger epoch",
                 dir);
        goto out_close;
    }
    if (e >= EPOCH_MAX) {
        rc = -EOVERFLOW;
        snprintf(err, errlen, "%s/EPOCH: the token epoch is exhausted", dir);
        goto out_close;
    }
    e++;
    n = snprintf(t, sizeof t, "chand-epoch %" PRIu64, e);
    n += snprintf(t + n, sizeof t - (size_t)n, " %08x\n", crc32c(t, (size_t)n));
    fd = openat(dirfd, "EPOCH.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                0600);
    if (fd < 0) {
        rc = -errno;
        goto out_err;
    }
    rc = write(fd, t, (size_t)n) == n ? 0 : (errno ? -errno : -EIO);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && renameat(dirfd, "EPOCH.tmp", dirfd, "EPOCH") != 0)
        rc = -errno;
    if (rc == 0 && fsync(dirfd) != 0)
        rc = -errno;
    if (rc)
        goto out_err;
    *epoch = e;
    goto out_close;
out_err:
    unlinkat(dirfd, "EPOCH.tmp", 0);
    snprintf(err, errlen, "%s/EPOCH: cannot write: %s", dir, strerror(-rc));
out_close:
    close(dirfd);
    return rc;
}
