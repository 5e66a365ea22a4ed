#!/usr/bin/env bash
# The benchmarks: routes at scale against `ip -batch`, call latency, service
# memory (bench/README.md), the journal's cost on the event loop
# (bench/journal.py), leak protection's cost (bench/leak.py), then
# NetworkChange fan-out (bench/FANOUT.md).
# As root:
#
#   sudo scripts/bench.sh [--sizes 0,100,1000,10000] [--reps 5] [--against REF] [--check]
#
# Sets up first (scripts/setup.sh), then runs bench/run.py (arguments go to
# it; table on stdout, JSON in bench/results/latest.json), bench/journal.py
# (--against REF goes to it too: both compare with commit REF in the same
# run), bench/leak.py and bench/fanout.py on dbus-daemon, then on dbus-broker
# (one line per case; exit 1 if an event was lost).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ $(id -u) != 0 ]]; then
    echo "bench: run as root (sudo $0)" >&2
    exit 1
fi
bash scripts/setup.sh
.venv/bin/python bench/run.py "$@"
against=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --against) against=(--against "${args[i + 1]:-}") ;;
        --against=*) against=("${args[i]}") ;;
    esac
done
echo
echo "The journal of an Establish of 10,000 routes (bench/journal.py):"
.venv/bin/python bench/journal.py "${against[@]}"
echo
echo "Leak protection: what its rules add to Establish (bench/leak.py):"
.venv/bin/python bench/leak.py
echo
echo "Split tunnelling: 1,000 parallel connections through the marking rules (bench/split.py):"
.venv/bin/python bench/split.py
echo
echo "NetworkChange fan-out of one Establish (bench/FANOUT.md), on dbus-daemon:"
.venv/bin/python bench/fanout.py
echo
echo "The same on dbus-broker (Fedora's and Arch's system bus):"
exec .venv/bin/python bench/fanout.py --bus dbus-broker
