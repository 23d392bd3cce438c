/*
 * testpath.c - testpath(): where the repository's files are, seen from a
 * test binary (see testpath.h); testfile_read(): one of them, whole.
 */
#include "testpath.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *testpath(const char *rel)
{
    static char path[PATH_MAX + 64];
    const char *bin = getenv("CHAND_BIN");
    char base[PATH_MAX];

    if (access(rel, R_OK) == 0)
        return rel;
    snprintf(base, sizeof base, "%s", bin ? bin : ".");
    for (int up = 0; up < 6; up++) {
        char *slash = strrchr(base, '/');
        if (!slash)
            break;
        *slash = '\0';
        snprintf(path, sizeof path, "%s/%s", base, rel);
        if (access(path, R_OK) == 0)
            return path;
    }
    return NULL;
}

char *testfile_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, *nb;
    size_t n = 0, cap = 0, r;

    if (!f)
        return NULL;
    do {
        if (cap - n < 4096) {
            cap = cap ? cap * 2 : 65536;
            nb = realloc(buf, cap + 1);
            if (!nb)
                goto out_free;
            buf = nb;
        }
        r = fread(buf + n, 1, cap - n, f);
        n += r;
    } while (r > 0);
    if (ferror(f))
        goto out_free;
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
out_free:
    free(buf);
    fclose(f);
    return NULL;
}
