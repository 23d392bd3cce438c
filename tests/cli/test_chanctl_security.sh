#!/usr/bin/env bash
# chanctl and a daemon with users (issue 17): -s unix:/PATH (the peer's
# uid maps to a user), --user with CHAND_PASSWORD or --password-file (never
# a password in argv), CHAND_SERVER with URLs, chands:// with --tls-ca and
# a client certificate whose CN names the user, and the exit codes of
# unauthenticated, denied and a bad URL.
. "$(dirname "$0")/lib.sh" || exit 1
here=$(cd "$(dirname "$0")/.." && pwd)

"$here/common/mkca.sh" "$T/ca" alice || fail "mkca.sh"
hash=$(printf 'secret\n' | "$CHAND_BIN" --hash-password) ||
    fail "--hash-password"
case $hash in '$y$'*) ;; *) fail "hash '$hash'" ;; esac
cat >"$T/users" <<EOT
alice $hash rw:jobs. r:*
me    -     uid=$(id -u) rwla:*
EOT
chmod 600 "$T/users"
sock="$T/chand.sock"
"$CHAND_BIN" --bind 127.0.0.1 --port 0 --port-file "$T/port" \
    --unix-socket "$sock" --users-file "$T/users" \
    --tls-port auto --tls-port-file "$T/tport" \
    --tls-cert "$T/ca/server.pem" --tls-key "$T/ca/server.key" \
    --tls-ca "$T/ca/ca.pem" >"$T/chand.log" 2>&1 &
CHAND_PID=$!
for i in $(seq 1 500); do [ -s "$T/port" ] && break; sleep 0.02; done
[ -s "$T/port" ] || fail "daemon did not start"
tcp="127.0.0.1:$(cat "$T/port")"
tls="chands://127.0.0.1:$(cat "$T/tport")"
unset CHAND_SERVER CHAND_USER CHAND_PASSWORD CHAND_PASSWORD_FILE \
    CHAND_TLS_CA CHAND_TLS_CERT CHAND_TLS_KEY

# over the unix socket this uid is "me": every right, no password
expect_exit 0 -s "unix:$sock" make ops.q 2
expect_exit 0 -s "unix:$sock" send ops.q '"job"'
CHAND_SERVER="unix:$sock" expect_out "1 2 0" len ops.q
case_ok "unix socket, uid mapped to a user"

# over TCP: unauthenticated until --user
expect_exit 3 -s "$tcp" len ops.q
grep -q unauthenticated "$T/err" || fail "no auth: $(cat "$T/err")"
expect_exit 2 -s "$tcp" --user alice len ops.q
grep -q "CHAND_PASSWORD or --password-file" "$T/err" ||
    fail "no password: $(cat "$T/err")"
CHAND_PASSWORD=secret expect_out "1 2 0" -s "$tcp" --user alice len ops.q
CHAND_PASSWORD=wrong expect_exit 3 -s "$tcp" --user alice len ops.q
grep -q "invalid user or password" "$T/err" || fail "wrong: $(cat "$T/err")"
printf 'secret\n' >"$T/pw"
expect_exit 0 -s "chand://$tcp" --user alice --password-file "$T/pw" \
    make jobs.a 1
CHAND_USER=alice CHAND_PASSWORD_FILE="$T/pw" expect_out "0 1 0" -s "$tcp" \
    len jobs.a
case_ok "--user with CHAND_PASSWORD and --password-file"

# outside alice's rules: denied, and nothing changed
CHAND_PASSWORD=secret expect_exit 3 -s "$tcp" --user alice recv ops.q
grep -q denied "$T/err" || fail "denied: $(cat "$T/err")"
expect_out "1 2 0" -s "unix:$sock" len ops.q
case_ok "denied changes nothing"

# TLS: the server's certificate checked against --tls-ca; CN=alice
expect_exit 4 -s "$tls" len ops.q
CHAND_TLS_CA="$T/ca/ca.pem" expect_exit 4 -s "$tls" len ops.q
expect_out "1 2 0" -s "$tls" --tls-ca "$T/ca/ca.pem" \
    --tls-cert "$T/ca/client.pem" --tls-key "$T/ca/client.key" len ops.q
CHAND_TLS_CA="$T/ca/ca.pem" CHAND_TLS_CERT="$T/ca/client.pem" \
    CHAND_TLS_KEY="$T/ca/client.key" expect_exit 3 -s "$tls" close ops.q
grep -q denied "$T/err" || fail "tls denied: $(cat "$T/err")"
case_ok "chands:// with a client certificate"

# bad URLs are usage errors
expect_exit 2 -s "http://$tcp" ping
expect_exit 2 -s "unix:relative" ping
case_ok "bad URLs"
