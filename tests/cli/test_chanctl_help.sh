#!/usr/bin/env bash
# `chanctl COMMAND --help` works (stdout, exit 0, a usage line) for every
# command the main help lists; no server needed.
. "$(dirname "$0")/lib.sh" || exit 1
export CHAND_SERVER=127.0.0.1:1

# --help on every command, found in the main help's command list.
"$CHANCTL_BIN" --help | sed -n '/^Commands:/,/^$/p' | sed '1d;$d' |
    awk '{ if ($1 ~ /^(mutex|rwmutex|wg|once|cond|pool|map|atomic)$/) print $1, $2; else print $1 }' >"$T/cmds"
[ "$(wc -l <"$T/cmds")" -gt 40 ] || fail "command list too short"
while read -r c; do
    # shellcheck disable=SC2086
    "$CHANCTL_BIN" $c --help >"$T/help" 2>&1 || fail "$c --help exited $?"
    grep -q "^Usage: chanctl" "$T/help" || fail "$c --help: no usage"
done <"$T/cmds"

for g in mutex rwmutex wg once cond pool map atomic; do
    "$CHANCTL_BIN" "$g" --help >"$T/help" 2>&1 || fail "$g --help exited $?"
    grep -q "^  $g " "$T/help" || fail "$g --help lists no subcommand"
done
"$CHANCTL_BIN" help send >"$T/help" 2>&1 || fail "help send exited $?"
grep -q "^Usage: chanctl \[OPTIONS\] send" "$T/help" || fail "help send: $(cat "$T/help")"
# Every command in one line with a description; one command's help is
# that command's only, without the global options and exit codes.
"$CHANCTL_BIN" --help | sed -n '/^Commands:/,/^$/p' | sed '1d;$d' >"$T/lines"
while IFS= read -r line; do
    desc=$(printf '%s\n' "$line" | sed -E 's/^  [a-z-]+( [a-z-]+)? +//')
    [ -n "$desc" ] && [ "$desc" != "$line" ] || fail "no description: '$line'"
done <"$T/lines"
"$CHANCTL_BIN" send --help >"$T/help" || fail "send --help exited $?"
grep -q -- '--server' "$T/help" && fail "send --help repeats the global options"
grep -q '^Exit status' "$T/help" && fail "send --help repeats the exit codes"
grep -q "chanctl --help" "$T/help" || fail "send --help does not point to the main help"
"$CHANCTL_BIN" mutex lock --help >"$T/help" || fail "mutex lock --help"
grep -q -- '--lease' "$T/help" || fail "mutex lock --help lacks its --lease"

# A misspelt command: usage error, with the nearest command.
expect_exit 2 sned q 1
grep -q "Did you mean 'send'" "$T/err" || fail "sned: $(cat "$T/err")"
expect_exit 2 mutex lokc m
grep -q "Did you mean 'mutex lock'" "$T/err" || fail "lokc: $(cat "$T/err")"
expect_exit 2 mutx lock m
grep -q "Did you mean 'mutex'" "$T/err" || fail "mutx: $(cat "$T/err")"
expect_exit 2 xyzzyplugh
grep -q "Did you mean" "$T/err" && fail "a far word got a suggestion"
echo "ok help"
