"""Helpers of the real-system test (tests/sysvm): commands, waiting, the
client's steps, and where the host put the packages.

Runs only inside the guest that scripts/sysvm-tests.sh boots (systemd as
PID 1, the distribution's dbus), as root.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from support.lifecycle import ADDR4, ADDR6, NETWORKS, dev_step, get_step, mgr_step, set_step

UNIT = "netcfg.service"
PKG = "ovpn3-netcfg"
SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
ACTIVATION = Path("/usr/share/dbus-1/system-services/net.openvpn.v3.netcfg.service")
POLICY = Path("/usr/share/dbus-1/system.d/net.openvpn.v3.netcfg.conf")
STATE_DIR = Path("/var/lib/netcfg")
DROP_IN = Path("/run/systemd/system/netcfg.service.d/sysvm.conf")
# Made on the host by scripts/sysvm-tests.sh, shared with the guest.
HOST_DIR = Path("/mnt/work/.cache/sysvm")
DEBS = HOST_DIR / "debs"
REPORT = HOST_DIR / "report.txt"
# Downloaded into the guest root by scripts/dcovm/build-guest.sh.
GUEST_DEBS = Path("/var/cache/sysvm-debs")

VPN_DNS = "10.8.0.53"
VPN_DOMAIN = "vpn.sysvm.example"
REMOTE = "203.0.113.5"
SOMARK = 0x4F56
UPLINK = ("up0", "192.0.2.2/24", "192.0.2.1")


def sh(cmd: str, check: bool = True, timeout: float = 300) -> str:
    """Run a shell command; its stdout (stderr too when it fails)."""
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"`{cmd}` exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r.stdout


def wait_for(what: str, predicate, timeout: float = 120, interval: float = 0.5):
    """Poll until `predicate()` is true (the emulated CPU is slow: generous
    timeouts, never fixed sleeps); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def report(title: str, text: str) -> None:
    """Keep `text` for the host (scripts/sysvm-tests.sh prints the file)."""
    with REPORT.open("a") as f:
        f.write(f"=== {title}\n{text.rstrip()}\n")


def unit_state() -> str:
    return sh(f"systemctl is-active {UNIT}", check=False).strip()


def main_pid() -> int:
    return int(sh(f"systemctl show -P MainPID {UNIT}").strip())


def stop_unit() -> None:
    sh(f"systemctl stop {UNIT}")
    wait_for("netcfg.service inactive", lambda: unit_state() in ("inactive", "failed"))
    status = sh(f"systemctl show -P ExecMainStatus {UNIT}").strip()
    assert status == "0", f"netcfg exited with {status}:\n{journal()}"


def set_options(options: str | None) -> None:
    """The unit's ExecStart with these options (a runtime drop-in: every
    hardening directive of the packaged unit still applies), or none."""
    if options is None:
        DROP_IN.unlink(missing_ok=True)
    else:
        DROP_IN.parent.mkdir(parents=True, exist_ok=True)
        DROP_IN.write_text(f"[Service]\nExecStart=\nExecStart=/opt/{PKG}/bin/netcfg-service --state-dir /var/lib/netcfg {options}\n")
    sh("systemctl daemon-reload")


def journal(*args: str) -> str:
    return sh(f"journalctl --no-pager -u {UNIT} " + " ".join(args))


def journal_entries() -> list[dict]:
    return [json.loads(line) for line in journal("-o", "json").splitlines() if line.strip()]


def links() -> dict[str, dict]:
    return {l["ifname"]: l for l in json.loads(sh("ip -j -d link show"))}


def routes(*selector: str) -> list[dict]:
    return json.loads(sh("ip -j route show " + " ".join(selector)) or "[]") + \
        json.loads(sh("ip -j -6 route show " + " ".join(selector)) or "[]")


def state_files() -> list[str]:
    return sorted(p.name for p in STATE_DIR.iterdir()) if STATE_DIR.exists() else []


def device_steps(name: str, *, protect: bool = False, dco_ifname: str | None = None) -> list[dict]:
    """A client's calls: a tun device with an address, networks and DNS,
    Established (optionally after ProtectSocket with a UDP socket); then,
    optionally, a DCO device.  Results: [0] the device path, [-N] as built."""
    dev = {"ref": [0, 0]}
    steps = [mgr_step("CreateVirtualInterface", "s", [name], timeout=120)]
    if protect:
        steps.append(mgr_step("ProtectSocket", "sbo", [REMOTE, False, dev], fd="udp4"))
    steps += [set_step(dev, "layer", "u", 3), set_step(dev, "mtu", "q", 1420),
              dev_step(dev, "AddIPAddress", "susb", ADDR4), dev_step(dev, "AddIPAddress", "susb", ADDR6),
              dev_step(dev, "AddNetworks", "a(suibb)", [list(NETWORKS)]),
              dev_step(dev, "AddDNS", "as", [[VPN_DNS]]),
              dev_step(dev, "AddDNSSearch", "as", [[VPN_DOMAIN]]),
              dev_step(dev, "Establish"), get_step(dev, "device_name")]
    for step in steps:
        step["timeout"] = 120  # Establish with DNS: seconds on the emulated CPU
    if dco_ifname:
        n = len(steps)
        steps += [mgr_step("CreateVirtualInterface", "s", [name + "_dco"]),
                  dev_step({"ref": [n, 0]}, "EnableDCO", "s", [dco_ifname], timeout=120)]
    return steps


def assert_ok(results: list[dict]) -> None:
    bad = [(i, r) for i, r in enumerate(results) if not r.get("ok")]
    assert not bad, f"failed steps: {bad}\nthe service's journal:\n{journal('-o', 'short-monotonic')}"


def ifname_of(results: list[dict]) -> str:
    """The tun's name: the device_name Get after Establish."""
    return next(r["body"][0]["variant"][1] for r in results
                if r.get("body") and isinstance(r["body"][0], dict) and "variant" in r["body"][0]
                and r["body"][0]["variant"][0] == "s")


def exposure(text: str) -> float:
    return float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", text).group(1))
