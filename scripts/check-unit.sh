#!/usr/bin/env bash
# Check systemd/netcfg.service with the host's systemd-analyze:
# `sudo scripts/check-unit.sh [PACKAGE.deb]`.
#
# * `systemd-analyze security --offline=true`: the exposure must be <= 2.0
#   ("OK"); prints the directives that still cost points.
# * `systemd-analyze verify`: must print nothing.  It checks that ExecStart=
#   exists, so it runs in a private mount namespace with the package's venv
#   bound at /opt/ovpn3-netcfg (the .deb given, else one scripts/build-deb.sh
#   builds now).
# Exit code 0 when both pass.  scripts/sysvm-tests.sh runs it, and the guest
# repeats both checks on the installed system (tests/sysvm).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0;; esac
UNIT="$REPO/systemd/netcfg.service"
say() { printf 'check-unit: %s\n' "$*" >&2; }
rc=0

security=$(systemd-analyze security --offline=true --threshold=20 --no-pager "$UNIT" 2>&1) || rc=1
grep -E '✗|Overall' <<<"$security" | sed 's/^/check-unit:   /' >&2
if (( rc )); then say "FAILED: exposure above 2.0"; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
deb=${1:-}
[[ -n $deb ]] || deb=$("$REPO/scripts/build-deb.sh" "$tmp/deb" | tail -n1)
dpkg-deb -x "$deb" "$tmp/root"
verify=$(unshare --mount --propagation private bash -c '
    mount -t tmpfs -o mode=755 check-unit /opt && mkdir /opt/ovpn3-netcfg &&
    mount --bind "$1/opt/ovpn3-netcfg" /opt/ovpn3-netcfg &&
    systemd-analyze verify --man=no "$2" 2>&1' sh "$tmp/root" "$UNIT") || rc=1
if [[ -n $verify ]]; then
    rc=1
    say "FAILED: systemd-analyze verify:"
    sed 's/^/check-unit:   /' <<<"$verify" >&2
fi
(( rc )) || say "ok: $(grep -o 'Overall exposure level.*' <<<"$security"); systemd-analyze verify clean"
exit "$rc"
