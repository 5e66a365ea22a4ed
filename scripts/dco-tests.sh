#!/usr/bin/env bash
# Run the DCO tests (tests/dco) inside a QEMU guest with the real kernel
# modules, once per kernel: `sudo scripts/dco-tests.sh [pytest args...]`.
#
# 1. Installs qemu-system-x86 and debootstrap when missing (apt-get).
# 2. Builds the guest root in .cache/dcovm/root (scripts/dcovm/build-guest.sh,
#    ~3 min) unless the one there carries the current stamp (the build
#    script, guest-init and the Python requirements are unchanged).  It has
#    two kernels (its .dcovm-kernels): Debian 12's 6.1 with the out-of-tree
#    ovpn-dco-v2 module, and a 6.16+ backports kernel (6.17) with mainline ovpn.
# 3. For each kernel, boots it (scripts/dcovm/run-in-vm.sh -k FAMILY) with this
#    checkout shared read-write at /mnt/work and runs
#    `NETCFG_DCO_FAMILY=FAMILY python -m pytest -q -ra tests/dco [pytest args...]`
#    there (the tests fail unless that family is the one the kernel has).
#    The guests run side by side when the host has a core per guest vCPU
#    (their output is then printed when both are done), else one after the
#    other; each output comes under a line naming its kernel, then one
#    summary line per kernel.
#
# Exits 0 when every kernel's run passed, else the first failure's code:
# pytest's, except 1 when pytest ran no test (its 5), 124 when the guest
# timed out, 125/126 when the guest could not run.
# env: DCOVM_KERNEL   only this kernel: a family (ovpn-dco-v2, ovpn) or a
#                     release prefix (6.1, 6.17); default: all of them
#      DCOVM_MEM      guest memory in MiB (default 1024)
#      DCOVM_CPUS     guest vCPUs (default 1)
#      DCOVM_PARALLEL 1: the kernels' guests side by side, 0: one after the
#                     other (default: 1 when nproc >= kernels x DCOVM_CPUS)
#      DCOVM_TIMEOUT  seconds before a guest is killed (default 1200)
#      DCOVM_REBUILD=1  rebuild the guest even if its stamp is current
#      DCOVM_LOG=FILE keep each guest's whole console in FILE.FAMILY
#      and those of scripts/dcovm/build-guest.sh (DCOVM_OVPN_KERNEL) and
#      scripts/dcovm/run-in-vm.sh (DCOVM_KARGS...)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
case "${1:-}" in -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0;; esac

say() { printf 'dco-tests: %s\n' "$*" >&2; }
if [[ $(id -u) != 0 ]]; then
    say "needs root (apt-get, debootstrap, chroot): sudo $0 $*"
    exit 1
fi

# host tools and the guest root (built or reused), under a shared lock
source "$REPO/scripts/dcovm/guest-root.sh"

# -- run, once per kernel ---------------------------------------------------
mapfile -t kernels < "$ROOT/.dcovm-kernels"
if [[ -n ${DCOVM_KERNEL:-} ]]; then
    mapfile -t kernels < <(awk -v k="$DCOVM_KERNEL" '$1 == k ||
        (index($2, k) == 1 && (length($2) == length(k) || substr($2, length(k) + 1, 1) ~ /[.+-]/))' \
        "$ROOT/.dcovm-kernels")
    (( ${#kernels[@]} )) || { say "FAILED: no kernel '$DCOVM_KERNEL' in $ROOT/.dcovm-kernels"; exit 126; }
fi
# The emulated CPU keeps one host core busy per vCPU: the guests run side by
# side when there is a core for each (a 2-core machine: ~3 min instead of ~6).
cpus=${DCOVM_CPUS:-1}
parallel=${DCOVM_PARALLEL:-$(( ${#kernels[@]} > 1 && $(nproc) >= ${#kernels[@]} * cpus ? 1 : 0 ))}
args=""
(( $# )) && args=" $(printf '%q ' "$@")"
logs=$(mktemp -d "${TMPDIR:-/tmp}/dco-tests.XXXXXX")
trap 'rm -rf "$logs"' EXIT

run_kernel() {  # FAMILY: one guest run; its exit code and seconds into $logs/FAMILY.{rc,secs}
    local family=$1 rc=0 start=$SECONDS
    DCOVM_LOG=${DCOVM_LOG:+$DCOVM_LOG.$family} scripts/dcovm/run-in-vm.sh -k "$family" -w "$REPO" -m "${DCOVM_MEM:-1024}" -s "$cpus" \
        -t "${DCOVM_TIMEOUT:-1200}" -- "NETCFG_DCO_FAMILY=$family python -m pytest -q -ra tests/dco$args" || rc=$?
    echo "$rc" > "$logs/$family.rc"
    echo "$((SECONDS - start))" > "$logs/$family.secs"
}

if (( parallel )); then
    say "running the ${#kernels[@]} kernels side by side (DCOVM_PARALLEL=0: one after the other)"
    for line in "${kernels[@]}"; do
        read -r family release <<<"$line"
        run_kernel "$family" > "$logs/$family.out" 2>&1 &
    done
    wait
fi
first_rc=0
summary=()
for line in "${kernels[@]}"; do
    read -r family release <<<"$line"
    say "=== kernel $release ($family): tests/dco ==="
    if (( parallel )); then cat "$logs/$family.out"; else run_kernel "$family"; fi
    rc=$(cat "$logs/$family.rc" 2>/dev/null || echo 125)
    case $rc in
        0)   verdict="passed" ;;
        5)   verdict="FAILED: pytest ran no test"; rc=1 ;;
        124) verdict="FAILED: the guest timed out (DCOVM_TIMEOUT=${DCOVM_TIMEOUT:-1200})" ;;
        125|126) verdict="FAILED: the guest could not run" ;;
        *)   verdict="FAILED: pytest exit code $rc" ;;
    esac
    summary+=("kernel $release ($family): $verdict, $(cat "$logs/$family.secs" 2>/dev/null || echo '?') s")
    (( first_rc != 0 || rc == 0 )) || first_rc=$rc
done
for line in "${summary[@]}"; do say "$line"; done
exit "$first_rc"
