#!/usr/bin/env bash
# One version everywhere: the Makefile's VERSION is what chand -V/--version,
# chanctl -V/--version, hello's answer, the installed libchand.pc and the
# installed man pages' .TH lines all say.
. "$(dirname "$0")/lib.sh" || exit 1
top=$(cd "$(dirname "$0")/../.." && pwd)
B=${BUILD:-build}
V=$(make -s --no-print-directory -C "$top" BUILD="$B" version) || fail "make version"
[[ "$V" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "VERSION '$V'"

for f in -V --version; do
    out=$("$CHAND_BIN" $f) || fail "chand $f exited $?"
    [[ "$out" == "chand $V "* ]] || fail "chand $f: '$out', want $V"
done
for f in -V --version; do
    out=$("$CHANCTL_BIN" $f) || fail "chanctl $f exited $?"
    [[ "$out" == "chanctl $V "* ]] || fail "chanctl $f: '$out', want $V"
done

start_daemon
out=$(ctl --json hello) || fail "hello exited $?"
[[ "$out" == *"\"server\":\"chand $V\""* ]] || fail "hello: '$out'"

root="$T/root"
make -s -C "$top" BUILD="$B" PREFIX=/usr DESTDIR="$root" install \
    >"$T/make.log" 2>&1 || fail "install: $(tail -5 "$T/make.log")"
grep -qx "Version: $V" "$root/usr/lib/pkgconfig/libchand.pc" ||
    fail "libchand.pc: $(grep Version "$root/usr/lib/pkgconfig/libchand.pc")"
[ -e "$root/usr/lib/libchand.so.$V" ] || fail "no libchand.so.$V"
for m in man1/chanctl.1 man8/chand.8 man5/chand.conf.5; do
    th=$(grep -m1 '^\.TH ' "$root/usr/share/man/$m")
    [[ "$th" == *"\"chand $V\""* ]] || fail "$m: '$th', want chand $V"
done
echo "ok version $V"
