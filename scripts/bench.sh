#!/usr/bin/env bash
# The benchmarks (bench/README.md): routes at scale against `ip -batch`,
# call latency, service memory.  As root:
#
#   sudo scripts/bench.sh [--sizes 0,100,1000,10000] [--reps 5] [--check]
#
# Sets up first (scripts/setup.sh), then runs bench/run.py with the venv's
# Python; the table goes to stdout, JSON to bench/results/latest.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ $(id -u) != 0 ]]; then
    echo "bench: run as root (sudo $0)" >&2
    exit 1
fi
bash scripts/setup.sh
exec .venv/bin/python bench/run.py "$@"
