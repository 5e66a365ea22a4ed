#!/usr/bin/env bash
# Run the test suite: `sudo scripts/test.sh [pytest args...]`.
# 1. Sets the machine up (scripts/setup.sh) and runs the host suite with
#    pytest from the repo's .venv; the arguments go to this pytest.
# 2. Runs the DCO tests (tests/dco) in a QEMU guest with the real modules,
#    once per kernel (6.1 with ovpn-dco-v2, 6.17 with mainline ovpn):
#    scripts/dco-tests.sh (builds the guest into .cache/dcovm the first time,
#    ~2-3 min, then reuses it).  NETCFG_NO_DCOVM=1 skips this part.
# Exits non-zero if either part failed; a part whose pytest ran no test
# (exit code 5) fails.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

if [[ $(id -u) != 0 ]]; then
    echo "test.sh: the tests need root (network namespaces, other users): sudo $0 $*" >&2
    exit 1
fi

scripts/setup.sh

rc=0
.venv/bin/python -m pytest -q -ra "$@" || rc=$?
if (( rc == 5 )); then
    echo "test.sh: FAILED: pytest collected no test to run" >&2
    rc=1
fi

if [[ -n ${NETCFG_NO_DCOVM:-} && ${NETCFG_NO_DCOVM} != 0 ]]; then
    cat >&2 <<'MSG'
test.sh: ######################################################################
test.sh: NETCFG_NO_DCOVM is set: the DCO tests (tests/dco, in the VM) were SKIPPED.
test.sh: This run does not cover DCO; run scripts/dco-tests.sh (or unset it).
test.sh: ######################################################################
MSG
    exit "$rc"
fi

echo "test.sh: host suite exit code $rc; now the DCO tests in the VM (scripts/dco-tests.sh)" >&2
vm_rc=0
scripts/dco-tests.sh || vm_rc=$?
if (( vm_rc != 0 )); then
    echo "test.sh: FAILED: the DCO tests in the VM (exit code $vm_rc)" >&2
fi
if (( rc != 0 )); then
    echo "test.sh: FAILED: the host suite (exit code $rc)" >&2
fi
exit $(( rc != 0 ? rc : vm_rc ))
