#!/usr/bin/env bash
# The README's "run it" command: a private system-type bus, netcfg inside a
# fresh network namespace, and an example client that creates, establishes
# and destroys a device.  Everything is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
run=$(mktemp -d /tmp/netcfg-demo.XXXXXX)
ns="netcfg-demo-$$"
chmod 0755 "$run"
cleanup() {
    [ -n "${svc:-}" ] && kill -TERM "$svc" 2>/dev/null && wait "$svc" 2>/dev/null || true
    [ -n "${bus:-}" ] && kill "$bus" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$run"
}
trap cleanup EXIT
sed -e "s|@SOCKET@|$run/bus.sock|" -e "s|@POLICY@|$PWD/dbus-policy/net.openvpn.v3.netcfg.conf|" \
    scripts/demo-bus.conf.in > "$run/bus.conf"
dbus-daemon --config-file="$run/bus.conf" --nofork --nopidfile &
bus=$!
for _ in $(seq 50); do [ -S "$run/bus.sock" ] && break; sleep 0.1; done
ip netns add "$ns"
ip -n "$ns" link set lo up
echo "== netcfg serving in network namespace $ns on unix:path=$run/bus.sock"
# DNS goes to a scratch resolv.conf, never the machine's own.
printf 'nameserver 192.0.2.53\nsearch example.net\noptions edns0\n' > "$run/resolv.conf"
ip netns exec "$ns" "$PY" -m netcfg --bus-address "unix:path=$run/bus.sock" --log-level 4 \
    --log-file "$run/netcfg.log" --idle-exit 0 --state-dir "$run/state" --resolv-conf "$run/resolv.conf" &
svc=$!
for _ in $(seq 100); do
    dbus-send --bus="unix:path=$run/bus.sock" --print-reply --dest=org.freedesktop.DBus / \
        org.freedesktop.DBus.NameHasOwner string:net.openvpn.v3.netcfg 2>/dev/null | grep -q "boolean true" && break
    sleep 0.1
done
"$PY" scripts/demo_client.py --address "unix:path=$run/bus.sock" --netns "$ns" --show-file "$run/resolv.conf"
echo "== $run/resolv.conf after Destroy (the original is back):"
cat "$run/resolv.conf"
kill -TERM "$svc"; wait "$svc"; svc=
echo
echo "== netcfg log"
cat "$run/netcfg.log"
echo "== links left in $ns after shutdown:"
ip -n "$ns" -br link
