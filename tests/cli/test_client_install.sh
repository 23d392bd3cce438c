#!/usr/bin/env bash
# `make install-client` into a DESTDIR: the library with its soname links,
# the header, the pkg-config file, chanctl and its man page; then a program
# built only from the installed files (pkg-config) talks to a daemon.
. "$(dirname "$0")/lib.sh" || exit 1
top=$(cd "$(dirname "$0")/../.." && pwd)
root="$T/root"
make -s -C "$top" BUILD="${BUILD:-build}" install-client DESTDIR="$root" \
    PREFIX=/usr >"$T/make.log" 2>&1 || fail "install: $(tail -5 "$T/make.log")"
for f in usr/lib/libchand.a usr/lib/libchand.so.1.0.0 usr/include/chand.h \
         usr/lib/pkgconfig/libchand.pc usr/bin/chanctl \
         usr/share/man/man1/chanctl.1; do
    [ -f "$root/$f" ] || fail "missing $f"
done
[ "$(readlink "$root/usr/lib/libchand.so.1")" = libchand.so.1.0.0 ] || fail "soname link"
[ "$(readlink "$root/usr/lib/libchand.so")" = libchand.so.1 ] || fail "dev link"
readelf -d "$root/usr/lib/libchand.so.1.0.0" | grep -q 'SONAME.*libchand.so.1' ||
    fail "no soname"
# Only chand_* is exported.
if nm -D --defined-only "$root/usr/lib/libchand.so.1.0.0" | awk '{print $3}' |
    grep -v '^chand_' | grep -q .; then
    fail "exports beyond chand_*"
fi

cat >"$T/hello.c" <<'EOC'
#include <chand.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
    chand_conn *c;
    char *host, *s = NULL;
    int port;
    (void)argc;
    if (chand_parse_address(argv[1], &host, &port) < 0 ||
        chand_connect(host, port, 5000, &c, NULL) < 0)
        return 1;
    if (chand_make(c, "inst", 1, "string") < 0 ||
        chand_send_str(c, "inst", "installed", 1000) < 0 ||
        chand_recv_str(c, "inst", 1000, &s) != 1)
        return 2;
    puts(s);
    free(s);
    free(host);
    chand_close_conn(c);
    return 0;
}
EOC
export PKG_CONFIG_PATH="$root/usr/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root"
flags=$(pkg-config --cflags --libs libchand) || fail "pkg-config"
# A sanitizer build's library needs its runtime in the program too.
if nm -D "$root/usr/lib/libchand.so.1.0.0" | grep -q __asan_init; then
    flags="$flags -fsanitize=address,undefined"
elif nm -D "$root/usr/lib/libchand.so.1.0.0" | grep -q __tsan_init; then
    flags="$flags -fsanitize=thread"
fi
cc -o "$T/hello" "$T/hello.c" $flags 2>"$T/cc.log" || fail "cc: $(cat "$T/cc.log")"
start_daemon
out=$(LD_LIBRARY_PATH="$root/usr/lib" "$T/hello" "$CHAND_SERVER") || fail "hello exited $?"
[ "$out" = installed ] || fail "hello printed '$out'"
LD_LIBRARY_PATH="$root/usr/lib" ldd "$T/hello" | grep -q "$root/usr/lib/libchand.so.1" ||
    fail "not linked against the installed library"
[ "$("$root/usr/bin/chanctl" ping)" = pong ] || fail "installed chanctl"
make -s -C "$top" BUILD="${BUILD:-build}" uninstall-client DESTDIR="$root" \
    PREFIX=/usr >>"$T/make.log" 2>&1 || fail "uninstall"
[ -z "$(find "$root" -type f -o -type l)" ] || fail "uninstall left $(find "$root" -type f -o -type l)"
echo "ok install"
