#!/usr/bin/env bash
# Run the tests: `sudo scripts/test.sh [pytest args...]`.
#
# Without arguments (what CI runs, through .ci/run): everything, in order
#   1. the host suite: pytest on tests/ from the repo's .venv (after
#      scripts/setup.sh);
#   2. the DCO tests in a QEMU guest with the real modules, once per kernel
#      (6.1 with ovpn-dco-v2, 6.17 with mainline ovpn): scripts/dco-tests.sh
#      (builds the guest into .cache/dcovm the first time, then reuses it);
#   3. the real-system test: the .deb installed on a guest that boots
#      systemd (same guest root): scripts/sysvm-tests.sh;
# then the time each part took.  NETCFG_NO_DCOVM=1 skips part 2,
# NETCFG_NO_SYSVM=1 part 3 (each says so, loudly).
#
# With arguments (a file, a directory, -k EXPR, -x ...): only the host
# suite's pytest with those arguments, i.e. only what was asked; no VM.
# The VM parts take their own arguments: scripts/dco-tests.sh -k ...,
# scripts/sysvm-tests.sh -k ...
#
# Exits non-zero if any part failed; a part whose pytest ran no test
# (exit code 5) fails.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
case "${1:-}" in -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0;; esac

if [[ $(id -u) != 0 ]]; then
    echo "test.sh: the tests need root (network namespaces, other users): sudo $0 $*" >&2
    exit 1
fi

scripts/setup.sh

times=()
failed=()
first_rc=0
part() {  # NAME COMMAND...: run one part, note its time and verdict
    local name=$1 start=$SECONDS rc=0
    shift
    "$@" || rc=$?
    (( rc != 5 )) || { echo "test.sh: FAILED: $name: pytest collected no test to run" >&2; rc=1; }
    times+=("$(printf '%-34s %5d s  %s' "$name" $((SECONDS - start)) "$( ((rc)) && echo "FAILED ($rc)" || echo passed)")")
    if (( rc != 0 )); then
        failed+=("$name")
        (( first_rc != 0 )) || first_rc=$rc
    fi
}

if (( $# )); then
    part "host suite (pytest $*)" .venv/bin/python -m pytest -q -ra "$@"
    echo "test.sh: arguments given: ran only what they select (no VM part; without arguments: everything)" >&2
    exit "$first_rc"
fi

part "host suite (tests/)" .venv/bin/python -m pytest -q -ra

skipped() {
    cat >&2 <<MSG
test.sh: ######################################################################
test.sh: $1 is set: $2 were SKIPPED.
test.sh: This run does not cover them; run $3 (or unset $1).
test.sh: ######################################################################
MSG
}
if [[ -n ${NETCFG_NO_DCOVM:-} && ${NETCFG_NO_DCOVM} != 0 ]]; then
    skipped NETCFG_NO_DCOVM "the DCO tests (tests/dco, in the VM)" scripts/dco-tests.sh
else
    part "DCO tests in the VM (2 kernels)" scripts/dco-tests.sh
fi
if [[ -n ${NETCFG_NO_SYSVM:-} && ${NETCFG_NO_SYSVM} != 0 ]]; then
    skipped NETCFG_NO_SYSVM "the real-system tests (tests/sysvm, the .deb under systemd in the VM)" \
        scripts/sysvm-tests.sh
else
    part "real-system test in the VM" scripts/sysvm-tests.sh
fi

for line in "${times[@]}"; do echo "test.sh: time: $line" >&2; done
if (( ${#failed[@]} )); then
    echo "test.sh: FAILED: ${failed[*]}" >&2
fi
exit "$first_rc"
