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
echo "ok help"
