# bash completion for netcfgctl(8)
# Installed as /usr/share/bash-completion/completions/netcfgctl.
# Device and subscriber names come from netcfgctl itself (root only; nothing otherwise).

_netcfgctl_json_values() {  # $1: the command, $2: the JSON key whose string values to list
    netcfgctl --json "$1" 2>/dev/null | sed -n "s/^ *\"$2\": \"\\([^\"]*\\)\".*/\\1/p"
}

_netcfgctl() {
    local cur prev words cword
    _init_completion || return
    local commands="status devices show protections subscribers unsubscribe watch log-level config cleanup"
    local global="--help --version --json --no-color"
    local keys="log-level log-file idle-exit resolv-conf systemd-resolved redirect-method set-somark bus-address dns-backend keep-all-capabilities somark-priority somark-table state-dir log-journal"
    local types="DEVICE_ADDED DEVICE_REMOVED IPADDR_ADDED IPADDR_REMOVED ROUTE_ADDED ROUTE_REMOVED ROUTE_EXCLUDED DNS_SERVER_ADDED DNS_SERVER_REMOVED DNS_SEARCH_ADDED DNS_SEARCH_REMOVED device address route dns"

    local i command=""
    for (( i = 1; i < cword; i++ )); do
        if [[ " $commands " == *" ${words[i]} "* ]]; then command="${words[i]}"; break; fi
    done
    case "$prev" in
        --type) COMPREPLY=( $(compgen -W "$types" -- "$cur") ); return ;;
        --device) COMPREPLY=( $(compgen -W "$(_netcfgctl_json_values devices name)" -- "$cur") ); return ;;
        --netcfg-json|--settings) _filedir; return ;;
        --pid) return ;;
    esac
    case "$command" in
        "") COMPREPLY=( $(compgen -W "$commands $global" -- "$cur") ) ;;
        status|devices|protections|subscribers) COMPREPLY=( $(compgen -W "--json --help" -- "$cur") ) ;;
        show) COMPREPLY=( $(compgen -W "--json --help $(_netcfgctl_json_values devices name)" -- "$cur") ) ;;
        cleanup) COMPREPLY=( $(compgen -W "--pid --help $(_netcfgctl_json_values devices name)" -- "$cur") ) ;;
        unsubscribe) COMPREPLY=( $(compgen -W "--help $(_netcfgctl_json_values subscribers bus_name)" -- "$cur") ) ;;
        watch) COMPREPLY=( $(compgen -W "--type --device --json --help" -- "$cur") ) ;;
        log-level) COMPREPLY=( $(compgen -W "0 1 2 3 4 5 6 --json --help" -- "$cur") ) ;;
        config)
            case "$prev" in
                config) COMPREPLY=( $(compgen -W "show set unset --netcfg-json --settings --json --help" -- "$cur") ) ;;
                set|unset) COMPREPLY=( $(compgen -W "$keys" -- "$cur") ) ;;
                *) COMPREPLY=( $(compgen -W "--netcfg-json --settings --json --help" -- "$cur") ) ;;
            esac ;;
    esac
}
complete -F _netcfgctl netcfgctl
