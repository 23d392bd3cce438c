/*
 * testpath.h - finding the repository's own files (corpora, PROTOCOL.md)
 * from a test binary, whether it runs from the top directory (make test)
 * or elsewhere with $CHAND_BIN pointing into the build directory; and
 * reading a file whole (the tests' one file reader).
 * Linked into every test and bench binary; no cmocka.
 */
#ifndef CHAND_TESTPATH_H
#define CHAND_TESTPATH_H

#include <stddef.h>

/* Returns the path of rel (relative to the repository's top, e.g.
 * "tests/fuzz") when it exists: rel itself from the top directory, else
 * found above $CHAND_BIN (build/.../chand).  The result lives in a static
 * buffer until the next call; NULL when it is nowhere to be found. */
const char *testpath(const char *rel);

/* Returns the whole file at path, NUL-terminated (new, malloc'd: the
 * caller frees it), its length in *len when len is not NULL; NULL when it
 * cannot be read. */
char *testfile_read(const char *path, size_t *len);

#endif /* CHAND_TESTPATH_H */
