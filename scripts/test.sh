#!/usr/bin/env bash
# Run the test suite: `sudo scripts/test.sh [pytest args...]`.
# Sets the machine up first (scripts/setup.sh), then runs pytest from the
# repo's .venv.  Fails when pytest ran no test (its exit code 5).
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
    exit 1
fi
exit "$rc"
