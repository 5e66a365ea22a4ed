#!/usr/bin/env bash
# The real-system test (tests/sysvm) in a QEMU guest that boots systemd as
# PID 1: `sudo scripts/sysvm-tests.sh [pytest args...]`.
#
# 1. Checks the unit on the host: `systemd-analyze security --offline=true`
#    must score <= 2.0 (--threshold=20) and `systemd-analyze verify` must be
#    clean (against the package's venv, bound at /opt/ovpn3-netcfg in a
#    private mount namespace).
# 2. Builds the package (scripts/build-deb.sh) and a stand-in "openvpn3"
#    package that owns the OpenVPN 3 Linux activation file and policy, into
#    .cache/sysvm/debs.
# 3. Reuses (or builds) the DCO guest root (scripts/dcovm/guest-root.sh) and
#    boots it with /sbin/sysvm-init: a tmpfs overlay over the read-only root,
#    then Debian's systemd as PID 1 with its dbus and udev
#    (scripts/sysvm/boot.sh).  There, systemd runs
#    `python -m pytest tests/sysvm [pytest args...]`: dpkg -i of
#    systemd-resolved, the stand-in and ours; D-Bus activation; a client as
#    `openvpn`; resolved, the resolv.conf file, openresolv, --set-somark and a
#    DCO link under the hardened unit; journalctl; dpkg -r / --purge.
# 4. Prints what the guest reported (.cache/sysvm/report.txt: dpkg output,
#    the unit's security table, journal lines) and the time of each stage.
#
# Exit code: pytest's (1 if it ran no test), 124 when the guest timed out,
# 125/126 when it could not run, 3 when the host check of the unit failed.
# env: SYSVM_TIMEOUT  seconds before the guest is killed (default 1200)
#      DCOVM_MEM      guest memory in MiB (default 1024)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
case "${1:-}" in -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0;; esac
say() { printf 'sysvm-tests: %s\n' "$*" >&2; }
[[ $(id -u) == 0 ]] || { say "needs root (dpkg-deb, mount namespaces, qemu): sudo $0 $*"; exit 1; }

OUT="$REPO/.cache/sysvm"
rm -rf "$OUT/debs" "$OUT/report.txt"
mkdir -p "$OUT/debs"
times=()
stage() { times+=("$(printf '%-34s %4d s' "$1" $((SECONDS - $2)))"); }

# -- 1 + 2: packages and the host's check of the unit ------------------------
t=$SECONDS
deb=$(scripts/build-deb.sh "$OUT/debs" | tail -n1)
stage "build the .deb" "$t"
t=$SECONDS
if ! scripts/check-unit.sh "$deb"; then
    say "FAILED: the unit's host check (scripts/check-unit.sh)"
    exit 3
fi
stage "systemd-analyze on the host" "$t"
standin=$(mktemp -d)
mkdir -p "$standin/DEBIAN" "$standin/usr/share/dbus-1/system-services" "$standin/usr/share/dbus-1/system.d"
printf '# stand-in for the OpenVPN 3 Linux package (tests/sysvm)\n[D-BUS Service]\nName=net.openvpn.v3.netcfg\nExec=/bin/false\nUser=root\n' \
    > "$standin/usr/share/dbus-1/system-services/net.openvpn.v3.netcfg.service"
printf '<!-- stand-in for the OpenVPN 3 Linux package (tests/sysvm) -->\n<busconfig/>\n' \
    > "$standin/usr/share/dbus-1/system.d/net.openvpn.v3.netcfg.conf"
printf 'Package: openvpn3\nVersion: 0~sysvm\nArchitecture: all\nMaintainer: tests <root@localhost>\nDescription: stand-in owning the files ovpn3-netcfg diverts\n' \
    > "$standin/DEBIAN/control"
dpkg-deb --root-owner-group --build "$standin" "$OUT/debs/openvpn3_0~sysvm_all.deb" >/dev/null
rm -rf "$standin"

# -- 3: the guest ---------------------------------------------------------------
t=$SECONDS
source "$REPO/scripts/dcovm/guest-root.sh"
stage "guest root (reused or built)" "$t"
args=""
(( $# )) && args=" $(printf '%q ' "$@")"
t=$SECONDS
rc=0
DCOVM_KARGS="quiet loglevel=3 systemd.show_status=false" \
    scripts/dcovm/run-in-vm.sh -i /sbin/sysvm-init -w "$REPO" -m "${DCOVM_MEM:-1024}" -t "${SYSVM_TIMEOUT:-1200}" -- \
    "echo \"sysvm: systemd up after \$(cut -d' ' -f1 /proc/uptime) s\"; python -m pytest -q -ra -p no:cacheprovider --durations=0 tests/sysvm$args" \
    || rc=$?
stage "guest: boot, tests, power-off" "$t"

# -- 4: report -----------------------------------------------------------------
if [[ -s $OUT/report.txt ]]; then
    say "what the guest reported ($OUT/report.txt):"
    cat "$OUT/report.txt"
fi
for line in "${times[@]}"; do say "time: $line"; done
case $rc in
    0)   say "passed" ;;
    5)   say "FAILED: pytest ran no test"; rc=1 ;;
    124) say "FAILED: the guest timed out (SYSVM_TIMEOUT=${SYSVM_TIMEOUT:-1200})" ;;
    125|126) say "FAILED: the guest could not run" ;;
    *)   say "FAILED: pytest exit code $rc" ;;
esac
exit "$rc"
