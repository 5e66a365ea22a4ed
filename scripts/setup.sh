#!/usr/bin/env bash
# Set up a Debian 12 machine for running and testing netcfg.  Idempotent and
# fast when everything is there already.  Run as root (apt-get, and the tests
# need root anyway):
#
#   sudo scripts/setup.sh
#
# 1. Debian packages: only the tools that are missing are installed, and
#    `apt-get update` runs only then.
# 2. A virtualenv at .venv in the repo, made with the first Python >= 3.11
#    of: $NETCFG_PYTHON, python3.11, python3, python3.12, python3.13.
# 3. `pip install -e '.[test]'` into it, skipped while pyproject.toml and
#    the interpreter are unchanged and the imports work.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
STAMP="$VENV/.netcfg-setup-stamp"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# -- 1. Debian packages -------------------------------------------------
# command (or absolute path) -> package providing it
declare -A NEEDS=(
    [dbus-daemon]=dbus-daemon   # the private test bus
    [dbus-monitor]=dbus-bin     # debugging the test bus (dbus-send too)
    [busctl]=systemd            # ReloadConfig on the test bus
    [ip]=iproute2               # netns, links, addresses, routes (ip -j)
    [sysctl]=procps
    [unshare]=util-linux        # private mount namespace (/dev/net/tun)
    [nsenter]=util-linux
    [setpriv]=util-linux
    [mount]=mount
    [useradd]=passwd            # the openvpn and netcfg-test users
    [/usr/sbin/nologin]=login
    [/usr/bin/python3]=python3  # readable interpreter for clients as other UIDs
    [nft]=nftables              # reading tables in the leak-protection tests and docs
    [groff]=groff-base          # the man pages render without warnings (tests/unit/test_manpages.py)
    [man]=man-db                # `man -l` of the rendered pages
)

missing=()
for cmd in "${!NEEDS[@]}"; do
    if [[ $cmd == /* ]]; then
        [[ -x $cmd ]] && continue
    else
        PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 && continue
    fi
    missing+=("${NEEDS[$cmd]}")
done

apt_install() {
    (( $# )) || return 0
    [[ $(id -u) == 0 ]] || die "packages missing ($*): run as root (sudo $0)"
    command -v apt-get >/dev/null || die "packages missing ($*) and no apt-get: not Debian?"
    say "installing Debian packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z ${_APT_UPDATED:-} ]]; then
        apt-get update -qq >/dev/null || die "apt-get update failed"
        _APT_UPDATED=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
        || die "apt-get install $* failed"
}

# libnftables' official Python binding (leak protection, netcfg/kernel/libnft.py):
# not on PyPI, so Debian's package; the venv loads it from dist-packages.
[[ -f /usr/lib/python3/dist-packages/nftables/__init__.py ]] || missing+=(python3-nftables)

if (( ${#missing[@]} )); then
    # unique package names
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    apt_install "${missing[@]}"
else
    say "Debian packages: all present"
fi

# -- 1b. dbus-broker, unpacked, not installed ----------------------------
# tests/service/test_on_dbus_broker.py and `bench/fanout.py --bus dbus-broker`
# run a private dbus-broker (Fedora's and Arch's system bus).  Debian's
# package would make itself this machine's system bus at the next boot, so
# its files are unpacked into .cache/dbus-broker instead; tests/support/
# brokerbus.py lays them over /usr/bin in a private mount namespace.
BROKER_ROOT="$REPO/.cache/dbus-broker"
if ! command -v dbus-broker-launch >/dev/null && [[ ! -x $BROKER_ROOT/usr/bin/dbus-broker-launch ]]; then
    broker_libs=()
    for lib in libapparmor.so.1:libapparmor1 libaudit.so.1:libaudit1 libcap-ng.so.0:libcap-ng0 \
               libexpat.so.1:libexpat1 libselinux.so.1:libselinux1 libsystemd.so.0:libsystemd0; do
        /sbin/ldconfig -p | grep -q "${lib%%:*}" || broker_libs+=("${lib##*:}")
    done
    apt_install "${broker_libs[@]}"
    say "unpacking dbus-broker into $BROKER_ROOT"
    debs="$(mktemp -d)"
    chmod 777 "$debs"  # apt's download runs as _apt
    if [[ -z ${_APT_UPDATED:-} ]]; then apt-get update -qq >/dev/null; _APT_UPDATED=1; fi
    # Not fatal: only the dbus-broker tests need it (they fail, saying so).
    if (cd "$debs" && apt-get download -qq dbus-broker >/dev/null 2>&1) \
            && mkdir -p "$BROKER_ROOT" && dpkg-deb -x "$debs"/dbus-broker_*.deb "$BROKER_ROOT"; then
        :
    else
        say "WARNING: could not fetch dbus-broker; tests/service/test_on_dbus_broker.py will fail"
        rm -rf "$BROKER_ROOT"
    fi
    rm -rf "$debs"
fi

# -- 2. Python and the venv ---------------------------------------------
py_ok() {  # python >= 3.11
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

venv_ok() {  # the venv's python runs and is >= 3.11
    [[ -x $VENV/bin/python ]] && py_ok "$VENV/bin/python"
}

PY=""
for cand in ${NETCFG_PYTHON:-} python3.11 python3 python3.12 python3.13; do
    if command -v "$cand" >/dev/null 2>&1 && py_ok "$cand"; then
        PY="$cand"
        break
    fi
done
if [[ -z $PY ]]; then
    apt_install python3
    PY=/usr/bin/python3
    py_ok "$PY" || die "no Python >= 3.11 found (set NETCFG_PYTHON)"
fi
PY_REAL="$("$PY" -c 'import sys; print(sys.executable)')"

if ! venv_ok; then
    if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        case "$PY_REAL" in
            /usr/bin/python3*)
                ver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
                apt_install "python$ver-venv" ;;
            *) die "$PY_REAL has no venv/ensurepip module" ;;
        esac
    fi
    say "creating virtualenv .venv with $PY_REAL"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" || die "python -m venv failed"
fi

# -- 3. The project and its test dependencies ---------------------------
want_stamp="$(cat "$REPO/pyproject.toml" <("$VENV/bin/python" -c 'import sys; print(sys.version)') \
    | sha256sum | cut -d' ' -f1) $REPO"

imports_ok() {
    local where
    where="$(cd / && "$VENV/bin/python" -c '
import netcfg, dbus_fast, pyroute2, yaml, pytest, pytest_asyncio, hypothesis
print(list(netcfg.__path__)[0])' 2>/dev/null)" || return 1
    [[ $where == "$REPO/netcfg" ]]
}

if [[ -f $STAMP && $(cat "$STAMP") == "$want_stamp" ]] && imports_ok; then
    say "virtualenv .venv: up to date"
else
    say "installing netcfg (editable) with its test dependencies into .venv"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
    # The distribution was called "netcfg" before it became "ovpn3-netcfg"
    # (that name is another project's on PyPI): the old install would stay.
    "$VENV/bin/python" -m pip uninstall -qq -y netcfg >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install -qq -e "$REPO[test]" \
        || die "pip install -e '.[test]' failed"
    imports_ok || die "the venv cannot import netcfg from $REPO after pip install"
    printf '%s\n' "$want_stamp" >"$STAMP"
fi
(cd / && "$VENV/bin/python" -c 'from netcfg.kernel.libnft import binding; binding().Nftables()') \
    || die "the venv cannot load libnftables' Python binding (python3-nftables)"
say "ready: $("$VENV/bin/python" --version 2>&1) in .venv"
