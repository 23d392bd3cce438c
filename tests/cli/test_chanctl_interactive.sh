#!/usr/bin/env bash
# The interactive mode, in a real terminal (tmux): `chanctl` with no
# command gives a prompt; commands run on one session, so a lock taken
# there stays held until unlocked or the user leaves; line editing,
# history (also across runs) and completion of command names work; and
# without a terminal, no command is still a usage error.  Then the bash
# completion script, installed by `make install`, completes commands,
# subcommands and options.
. "$(dirname "$0")/lib.sh" || exit 1
command -v tmux >/dev/null || fail "tmux is needed"
top=$(cd "$(dirname "$0")/../.." && pwd)
# A private tmux server; its socket lives outside $T, which cleanup removes.
TMUX_SOCK="chanctl-test-$$"
tm() { tmux -L "$TMUX_SOCK" "$@"; }
trap 'tm kill-server 2>/dev/null; cleanup' EXIT
# A session that lives as long as the test: a tmux server with no session
# left exits, and a new-session racing with that exit fails.
tm new-session -d -s keep "sleep 3600" || fail "tmux did not start"
start_daemon
export HOME="$T"     # the history file goes to $HOME/.chanctl_history

# wait_pane PATTERN: polls the pane until it shows PATTERN (grep -E).
wait_pane() {
    local i
    for i in $(seq 1 500); do
        tm capture-pane -p -S -200 -t repl >"$T/pane" 2>/dev/null
        grep -Eq -- "$1" "$T/pane" && return 0
        sleep 0.02
    done
    fail "the pane never showed '$1': $(cat "$T/pane")"
}
# wait_held NAME: polls until mutex NAME is held (by the prompt's session).
wait_held() {
    local i
    for i in $(seq 1 500); do
        "$CHANCTL_BIN" mutex lock "$1" --timeout 0 -q >/dev/null 2>&1
        [ $? = 124 ] && return 0
        sleep 0.02
    done
    fail "mutex $1 never held"
}
# count PATTERN: how many lines of the pane match.
count() { tm capture-pane -p -S -200 -t repl | grep -Ec -- "$1"; }
start_repl() {
    rm -f "$T/rc"
    tm new-session -d -s repl -x 120 -y 50 \
        "HOME='$T' CHAND_SERVER=$CHAND_SERVER '$CHANCTL_BIN'; echo \$? >'$T/rc'; sleep 60"
    wait_pane "^$CHAND_SERVER> *\$"
}
wait_rc() {
    local i
    for i in $(seq 1 500); do [ -s "$T/rc" ] && break; sleep 0.02; done
    [ "$(cat "$T/rc" 2>/dev/null)" = 0 ] || fail "chanctl exited '$(cat "$T/rc" 2>/dev/null)'"
}

start_repl
grep -q "session" "$T/pane" || fail "no banner: $(cat "$T/pane")"
# One session: a lock taken at the prompt stays held.
tm send-keys -t repl 'mutex lock deploy' Enter
wait_pane '^1$'
expect_exit 124 mutex lock deploy --timeout 100ms
tm send-keys -t repl 'mutex unlock deploy' Enter
wait_pane "> mutex unlock deploy"
for i in $(seq 1 500); do
    ctl mutex lock deploy --timeout 1s -q >/dev/null && break
    sleep 0.02
done
ctl mutex lock deploy --timeout 1s -q >/dev/null || fail "unlock at the prompt did not release"
# Quotes as in the shell; errors keep the prompt going.
tm send-keys -t repl "make q 1" Enter "send q 'hello world'" Enter "recv q" Enter
wait_pane '^"hello world"$'
tm send-keys -t repl "sned q 1" Enter
wait_pane "Did you mean 'send'"
wait_pane '^\(exit 2\)$'
# Line editing: fix a typo with the arrow keys; history: Up repeats.
tm send-keys -t repl "png" Left Left i Enter
wait_pane '^pong$'
tm send-keys -t repl Up Enter
for i in $(seq 1 500); do [ "$(count '^pong$')" = 2 ] && break; sleep 0.02; done
[ "$(count '^pong$')" = 2 ] || fail "Up did not repeat ping: $(cat "$T/pane")"
# Completion of a command and of a subcommand.
tm send-keys -t repl "gomaxp" Tab Enter
wait_pane '> gomaxprocs *$'
tm send-keys -t repl "atomic ad" Tab "hits 5" Enter
wait_pane '> atomic add hits 5$'
wait_pane '^5$'
# Ctrl-C at the prompt drops the line; in watch it ends the watch, not
# the session.
tm send-keys -t repl "mutex lock kept" Enter
wait_held kept
tm send-keys -t repl "bogus words"
wait_pane '> bogus words$'
tm send-keys -t repl C-c
# As in a shell, the line stays on the screen, unrun, under a fresh
# prompt (wait for it: a signal is not ordered with keys typed after it).
for i in $(seq 1 500); do
    tm capture-pane -p -S -200 -t repl >"$T/pane"
    [[ "$(grep -v '^ *$' "$T/pane" | tail -2 | tr '\n' '|')" =~ \>\ bogus\ words\|$CHAND_SERVER\>\ *\|$ ]] &&
        break
    sleep 0.02
done
[[ "$(grep -v '^ *$' "$T/pane" | tail -2 | tr '\n' '|')" =~ \>\ bogus\ words\|$CHAND_SERVER\>\ *\|$ ]] ||
    fail "no fresh prompt after Ctrl-C: $(cat "$T/pane")"
tm send-keys -t repl "watch kept --interval 50ms" Enter
wait_pane 'kept: locked'
tm send-keys -t repl C-c
wait_pane '^\^?C?\(exit 130\)$'
grep -q "command 'bogus'" "$T/pane" && fail "Ctrl-C ran the line: $(cat "$T/pane")"
expect_exit 124 mutex lock kept --timeout 100ms   # still held: same session
# Leaving releases what the session held.
tm send-keys -t repl "mutex lock held" Enter
wait_held held
tm send-keys -t repl "exit" Enter
wait_rc
expect_exit 0 mutex lock held --timeout 2s -q
grep -q "ping" "$T/.chanctl_history" || fail "no history file"
tm kill-session -t repl
# History across runs, and Ctrl-D leaves.
start_repl
tm send-keys -t repl Up
wait_pane "> exit\$"
tm send-keys -t repl C-u C-d
wait_rc
tm kill-session -t repl

# Without a terminal, no command is a usage error, as before.
expect_exit 2 </dev/null

# bash completion, as installed.
root="$T/root"
make -s -C "$top" BUILD="${BUILD:-build}" PREFIX=/usr DESTDIR="$root" \
    install-client >"$T/make.log" 2>&1 || fail "install: $(tail -5 "$T/make.log")"
bc="$root/usr/share/bash-completion/completions/chanctl"
[ -f "$bc" ] || fail "no bash completion installed"
[ -f "$root/usr/share/zsh/site-functions/_chanctl" ] || fail "no zsh completion installed"
mkdir -p "$T/bin" && ln -sf "$CHANCTL_BIN" "$T/bin/chanctl"
comp() { # WORDS...: prints what completing the last word offers
    PATH="$T/bin:$PATH" bash -c '. "$1"; shift
        COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        _chanctl; echo "${COMPREPLY[*]}"' _ "$bc" "$@"
}
[ "$(comp chanctl se)" = "select send" ] || fail "complete 'se': $(comp chanctl se)"
[ "$(comp chanctl mutex '')" = "lock unlock run" ] || fail "mutex: $(comp chanctl mutex '')"
[ "$(comp chanctl -s x:1 rwmutex rl)" = "rlock" ] || fail "rwmutex rl: $(comp chanctl -s x:1 rwmutex rl)"
[[ " $(comp chanctl send q --) " == *" --file "* ]] || fail "send --: $(comp chanctl send q --)"
[ "$(comp chanctl make q --type s)" = "string" ] || fail "--type: $(comp chanctl make q --type s)"
if command -v zsh >/dev/null; then
    zsh -n "$root/usr/share/zsh/site-functions/_chanctl" || fail "zsh completion: syntax"
fi
echo "ok interactive"
