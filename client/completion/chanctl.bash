# bash completion for chanctl(1).  The commands, their subcommands and
# their options come from chanctl's own help, so they never go stale.
# Installed by `make install` into share/bash-completion/completions/.

_chanctl_commands() { # prints "cmd" or "group sub", one a line
    "${1:-chanctl}" --help 2>/dev/null |
        sed -n '/^Commands:/,/^$/p' | sed '1d;$d' |
        awk '{ n = substr($0, 3, 22); sub(/ +$/, "", n); print n }'
}

_chanctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} prog=${COMP_WORDS[0]}
    local i w words=() skip=0
    # The words before the cursor that are not options (or their values).
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [ "$skip" = 1 ]; then skip=0; continue; fi
        case $w in
            --) return 0 ;;   # a command to run: leave it to bash
            -s | -t | --server | --timeout | --lease | --token | --cap | \
            --type | --file | --make | --grace | --interval | --ack-wait | --max | \
            --max-deliver | --dead-letter | --delay | --reason) skip=1 ;;
            -*) ;;
            *) words+=("$w") ;;
        esac
    done
    local prev=${COMP_WORDS[COMP_CWORD-1]}
    case $prev in
        --file) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
        --type) COMPREPLY=($(compgen -W "any string number bool object array" -- "$cur")); return 0 ;;
        -s | -t | --server | --timeout | --lease | --token | --cap | \
        --make | --grace | --interval | --ack-wait | --max | --max-deliver | \
        --dead-letter | --delay | --reason) return 0 ;;
    esac
    local list
    list=$(_chanctl_commands "$prog")
    if [[ $cur == -* ]]; then
        local opts="-s --server -t --timeout --json --raw -q --quiet -h --help -V --version"
        if [ ${#words[@]} -gt 0 ]; then
            opts="$opts $("$prog" "${words[@]:0:2}" --help 2>/dev/null |
                sed -n '/^Options of this command:/,/^$/p' | grep -o -- '--[a-z-]*')"
        fi
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [ ${#words[@]} -eq 0 ]; then
        COMPREPLY=($(compgen -W "$(echo "$list" | awk '{print $1}' | sort -u) help" -- "$cur"))
    elif [ ${#words[@]} -eq 1 ]; then
        COMPREPLY=($(compgen -W "$(echo "$list" | awk -v g="${words[0]}" '$1 == g && NF == 2 {print $2}')" -- "$cur"))
    fi
    return 0
}
complete -F _chanctl chanctl
