#!/usr/bin/env bash
# Run the DCO tests (tests/dco) inside a QEMU guest that has the real
# ovpn-dco-v2 kernel module: `sudo scripts/dco-tests.sh [pytest args...]`.
#
# 1. Installs qemu-system-x86 and debootstrap when missing (apt-get).
# 2. Builds the guest root in .cache/dcovm/root (scripts/dcovm/build-guest.sh,
#    ~2 min) unless the one there carries the current stamp (the build
#    script, guest-init and the Python requirements are unchanged).
# 3. Boots it (scripts/dcovm/run-in-vm.sh) with this checkout shared
#    read-write at /mnt/work and runs `python -m pytest -q -ra tests/dco
#    [pytest args...]` there; prints the output.
#
# Exits with pytest's exit code, except: 1 when pytest ran no test (its 5),
# 124 when the guest timed out, 125/126 when the guest could not run.
# env: DCOVM_MEM      guest memory in MiB (default 1024)
#      DCOVM_CPUS     guest vCPUs (default 1)
#      DCOVM_TIMEOUT  seconds before the guest is killed (default 1200)
#      DCOVM_REBUILD=1  rebuild the guest even if its stamp is current
#      and those of scripts/dcovm/run-in-vm.sh (DCOVM_LOG, DCOVM_KARGS...)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
case "${1:-}" in -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0;; esac

say() { printf 'dco-tests: %s\n' "$*" >&2; }
if [[ $(id -u) != 0 ]]; then
    say "needs root (apt-get, debootstrap, chroot): sudo $0 $*"
    exit 1
fi

CACHE="$REPO/.cache/dcovm"
ROOT="$CACHE/root"
mkdir -p "$CACHE"

# -- host tools ----------------------------------------------------------
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if (( ${#missing[@]} )); then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# build-guest.sh reads pyproject.toml and downloads wheels with the repo's venv
[[ -x .venv/bin/python ]] || scripts/setup.sh

# -- guest root: build unless current; runs hold a shared lock -------------
exec 9>"$CACHE/lock"
flock -x 9
want="$(scripts/dcovm/build-guest.sh --stamp)"
have="$(head -n1 "$ROOT/.dcovm-stamp" 2>/dev/null || true)"
if [[ $want != "$have" || ${DCOVM_REBUILD:-0} == 1 ]]; then
    old="${have:0:12}"
    say "building the guest root in $ROOT (stamp ${want:0:12}, was ${old:-none})"
    start=$SECONDS
    scripts/dcovm/build-guest.sh "$ROOT"
    say "guest built in $((SECONDS - start)) s"
else
    say "reusing the guest root in $ROOT (stamp ${want:0:12})"
fi
flock -s 9

# -- run -------------------------------------------------------------------
cmd="python -m pytest -q -ra tests/dco"
(( $# )) && cmd+=" $(printf '%q ' "$@")"
rc=0
start=$SECONDS
scripts/dcovm/run-in-vm.sh -w "$REPO" -m "${DCOVM_MEM:-1024}" -s "${DCOVM_CPUS:-1}" \
    -t "${DCOVM_TIMEOUT:-1200}" -- "$cmd" || rc=$?
say "guest run took $((SECONDS - start)) s, exit code $rc"
case $rc in
    5)   say "FAILED: pytest ran no test in the guest"; exit 1 ;;
    124) say "FAILED: the guest timed out (DCOVM_TIMEOUT=${DCOVM_TIMEOUT:-1200})" ;;
    125|126) say "FAILED: the guest could not run" ;;
esac
exit "$rc"
