#!/usr/bin/env bash
# `make install` / `make uninstall` into a DESTDIR with PREFIX=/usr: every
# file of the daemon and the client lands in place (the unit with the
# installed paths), an existing chand.conf is never overwritten nor
# removed, the sample is removed only while unchanged, and the installed
# daemon starts on the installed config.
. "$(dirname "$0")/lib.sh" || exit 1
top=$(cd "$(dirname "$0")/../.." && pwd)
B=${BUILD:-build}
root="$T/root"
mk() {
    make -s -C "$top" BUILD="$B" PREFIX=/usr DESTDIR="$root" "$@" \
        >"$T/make.log" 2>&1 || fail "make $*: $(tail -5 "$T/make.log")"
}
files="usr/sbin/chand usr/bin/chanctl usr/lib/libchand.a
       usr/lib/libchand.so.1.0.0 usr/include/chand.h
       usr/lib/pkgconfig/libchand.pc usr/share/man/man8/chand.8
       usr/share/man/man5/chand.conf.5 usr/share/man/man1/chanctl.1
       usr/lib/systemd/system/chand.service
       usr/lib/systemd/system/chand.socket etc/chand.conf
       usr/share/doc/chand/PROTOCOL.md"

# 1. A fresh install.
mk install
for f in $files; do [ -f "$root/$f" ] || fail "missing $f"; done
[ -x "$root/usr/sbin/chand" ] || fail "chand not executable"
cmp -s "$top/configs/chand.conf" "$root/etc/chand.conf" || fail "sample differs"
unit="$root/usr/lib/systemd/system/chand.service"
grep -q '^ExecStart=/usr/sbin/chand --config /etc/chand.conf$' "$unit" ||
    fail "unit paths: $(grep ExecStart "$unit")"
grep -q '^Type=notify$' "$unit" || fail "unit is not Type=notify"
grep -q 'usr/local' "$unit" && fail "unit still names /usr/local"
# The protocol is installed with the docs, and chand --help names it.
cmp -s "$top/proto/PROTOCOL.md" "$root/usr/share/doc/chand/PROTOCOL.md" ||
    fail "PROTOCOL.md differs"
"$root/usr/sbin/chand" --help >"$T/help.out" 2>&1 || fail "chand --help exited $?"
grep -qx "  $root/usr/share/doc/chand/PROTOCOL.md" "$T/help.out" ||
    fail "chand --help does not name the installed PROTOCOL.md: $(tail -4 "$T/help.out")"
# The installed daemon accepts the installed config.
"$root/usr/sbin/chand" --config "$root/etc/chand.conf" --test-config \
    >"$T/tc.out" 2>&1 || fail "installed config rejected: $(cat "$T/tc.out")"

# The units pass systemd's own checker, pointed at the staged files.
if command -v systemd-analyze >/dev/null 2>&1; then
    mkdir -p "$T/units"
    sed -e "s|/usr/sbin/chand|$root/usr/sbin/chand|g" \
        -e "s|/etc/chand.conf|$root/etc/chand.conf|g" "$unit" >"$T/units/chand.service"
    cp "$root/usr/lib/systemd/system/chand.socket" "$T/units/"
    systemd-analyze verify --man=no "$T/units/chand.service" \
        "$T/units/chand.socket" >"$T/verify.log" 2>&1 ||
        fail "systemd-analyze verify: $(cat "$T/verify.log")"
    [ ! -s "$T/verify.log" ] || fail "systemd-analyze verify: $(cat "$T/verify.log")"
fi

# 2. Uninstall removes every file, the unchanged sample too.
mk uninstall
for f in $files; do [ ! -e "$root/$f" ] || fail "left behind: $f"; done
[ ! -e "$root/usr/share/doc/chand" ] || fail "left behind: usr/share/doc/chand"
left=$(find "$root" -type f -o -type l)
[ -z "$left" ] || fail "left behind: $left"

# 3. A config that was there before survives install and uninstall.
mkdir -p "$root/etc"
printf 'port = 9999\n' >"$root/etc/chand.conf"
mk install
[ "$(cat "$root/etc/chand.conf")" = "port = 9999" ] || fail "config overwritten"
grep -q 'keeping the existing' "$T/make.log" || fail "install did not say it kept the config"
mk uninstall
[ "$(cat "$root/etc/chand.conf")" = "port = 9999" ] || fail "config removed"
[ ! -e "$root/usr/sbin/chand" ] || fail "chand left behind"

# 4. PREFIX=/usr/local puts the config under PREFIX/etc.
make -s -C "$top" BUILD="$B" DESTDIR="$T/r2" install >"$T/make.log" 2>&1 ||
    fail "install (default prefix): $(tail -5 "$T/make.log")"
[ -f "$T/r2/usr/local/etc/chand.conf" ] || fail "no /usr/local/etc/chand.conf"
[ -f "$T/r2/usr/local/sbin/chand" ] || fail "no /usr/local/sbin/chand"
grep -q '^ExecStart=/usr/local/sbin/chand --config /usr/local/etc/chand.conf$' \
    "$T/r2/usr/local/lib/systemd/system/chand.service" || fail "default unit paths"
echo "ok"
