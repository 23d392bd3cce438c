/*
 * testpath.c - testpath(): where the repository's files are, seen from a
 * test binary (see testpath.h).
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
