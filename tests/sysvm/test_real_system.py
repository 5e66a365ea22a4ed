"""The package on a real Debian 12 system (issue 10): systemd as PID 1, the
distribution's dbus and systemd-resolved, ovpn3-netcfg installed with
`dpkg -i` over a stand-in OpenVPN 3 Linux package that owns the activation
file and the policy.  Runs only in the guest of scripts/sysvm-tests.sh; the
tests depend on each other and run in file order (install, use, remove).

Nothing is faked: the client is the tests' client runner as the `openvpn`
user on the system bus; the kernel, resolved, openresolv, dpkg and journald
are the guest's own.  The stand-in "openvpn3" package is a real .deb built
by scripts/sysvm-tests.sh: only its two files matter here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from support.client import run_client
from support.users import ensure_users

from system import (
    ACTIVATION, DEBS, GUEST_DEBS, PKG, POLICY, REMOTE, SOMARK, STATE_DIR, SYSTEM_BUS, UNIT, UPLINK, VPN_DNS,
    VPN_DOMAIN, assert_ok, device_steps, exposure, ifname_of, journal, journal_entries, links, main_pid, report,
    routes, set_options, sh, state_files, stop_unit, unit_state, wait_for,
)

pytestmark = pytest.mark.skipif(not os.environ.get("NETCFG_SYSVM"), reason="only in the sysvm guest")

STANDIN = "stand-in for the OpenVPN 3 Linux package"
CAPS = (0, 1, 3, 12, 13)  # CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_NET_ADMIN, CAP_NET_RAW


@pytest.fixture(scope="module")
def openvpn():
    # before the package: the bus drops policies naming unknown users
    return ensure_users().openvpn


def test_install_over_openvpn3(openvpn):
    sh(f"dpkg -i {GUEST_DEBS}/systemd-resolved/*.deb")
    # Its postinst starts it before dpkg's trigger makes the bus load its
    # policy, so it could not own its name: a restart, as at the next boot.
    sh("systemctl restart systemd-resolved")
    wait_for("org.freedesktop.resolve1 on the bus", lambda: sh(
        "busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus GetNameOwner "
        "s org.freedesktop.resolve1", check=False))
    assert os.readlink("/etc/resolv.conf").endswith("/run/systemd/resolve/stub-resolv.conf")
    sh(f"dpkg -i {DEBS}/openvpn3_*.deb")
    assert STANDIN in ACTIVATION.read_text() and STANDIN in POLICY.read_text()
    Session.names_before = names_like_ours()

    out = sh(f"dpkg -i {DEBS}/{PKG}_*.deb")
    report("dpkg -i", out)
    for path in (ACTIVATION, POLICY):
        assert "/opt/ovpn3-netcfg" in path.read_text() or "net.openvpn.v3.netcfg" in path.read_text()
        assert STANDIN not in path.read_text()
        assert STANDIN in Path(f"{path}.distrib").read_text()
        assert sh(f"dpkg-divert --listpackage {path}").strip() == PKG
    assert "SystemdService=netcfg.service" in ACTIVATION.read_text()
    assert STATE_DIR.is_dir() and (STATE_DIR.stat().st_mode & 0o777) == 0o700
    assert sh("readlink /usr/sbin/netcfg-service").strip() == "/opt/ovpn3-netcfg/bin/netcfg-service"
    assert sh("netcfg-service --version").strip() == "netcfg 0.1.0"
    assert unit_state() == "inactive"  # installed, not started: D-Bus activation starts it


def test_unit_is_hardened_and_verifies():
    assert sh(f"systemd-analyze verify {UNIT} 2>&1") == ""
    out = sh(f"systemd-analyze security --no-pager {UNIT}")
    report("systemd-analyze security netcfg.service (in the guest; what still costs points)",
           "\n".join(l for l in out.splitlines() if "✗" in l or "Overall" in l))
    assert exposure(out) <= 2.0


def test_dbus_activation_starts_the_unit():
    out = sh("busctl --timeout=120 call net.openvpn.v3.netcfg /net/openvpn/v3/netcfg "
             "org.freedesktop.DBus.Properties Get ss net.openvpn.v3.netcfg version")
    assert out.strip() == 'v s "netcfg 0.1.0"'
    assert unit_state() == "active"
    pid = main_pid()
    assert "/opt/ovpn3-netcfg/bin/netcfg-service" in Path(f"/proc/{pid}/cmdline").read_text()
    status = Path(f"/proc/{pid}/status").read_text()
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M) and re.search(r"^Seccomp:\s+2$", status, re.M)
    bounding = int(re.search(r"^CapBnd:\s+([0-9a-f]+)$", status, re.M).group(1), 16)
    assert bounding == sum(1 << cap for cap in CAPS), f"{bounding:#x}"


class Session:
    """What the tests hand on to later ones."""
    client = None
    ifname = ""
    path = ""
    names_before: list[str] = []


def names_like_ours() -> list[str]:
    """Every path named like something of ours (before our package, and after its purge)."""
    return sorted(sh("find / -xdev \\( -path /proc -o -path /sys -o -path /mnt -o -path /oldroot -o -path /tmp \\) "
                     "-prune -o \\( -name '*netcfg*' -o -name '*ovpn3*' \\) -print").split())


def test_client_as_openvpn_under_the_hardened_unit(openvpn):
    client = run_client(SYSTEM_BUS, device_steps("sysvm"), user=openvpn.name, hold=True, timeout=180)
    Session.client = client
    assert_ok(client.results)
    Session.path, Session.ifname = client.results[0]["body"][0], ifname_of(client.results)
    assert Session.ifname in links()
    dsts = {r["dst"] for r in routes("dev", Session.ifname)}
    assert {"192.168.100.0/24", "172.16.0.0/12"} <= dsts, dsts
    wait_for("resolved to show the VPN's DNS on the link",
             lambda: VPN_DNS in sh(f"resolvectl dns {Session.ifname}", check=False))
    report("resolvectl status " + Session.ifname, sh(f"resolvectl status {Session.ifname}"))
    assert VPN_DOMAIN in sh(f"resolvectl domain {Session.ifname}")
    assert any(name.startswith("ledger-") for name in state_files())


def test_journal_has_priorities_and_device_fields(openvpn):
    sh(f"systemctl kill -s HUP {UNIT}")
    wait_for("the SIGHUP warning", lambda: "SIGHUP ignored" in journal("-p", "warning", "-o", "cat"))
    assert unit_state() == "active"
    warnings = journal("-p", "warning")
    report("journalctl -u netcfg.service -p warning", warnings)
    report("journalctl -u netcfg.service (all)", journal())
    assert "established as" not in warnings and "serving" not in warnings  # info lines stay out
    entries = journal_entries()
    ours = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "netcfg-service"]
    assert ours, "no entry from netcfg-service"
    assert all(not re.match(r"\d{4}-\d\d-\d\d", e["MESSAGE"]) for e in ours)  # no second timestamp
    assert {e["PRIORITY"] for e in ours if "SIGHUP ignored" in e["MESSAGE"]} == {"4"}
    device = [e for e in ours if e.get("NETCFG_DEVICE_PATH") == Session.path]
    assert device and all(e["NETCFG_OWNER_UID"] == str(openvpn.uid) for e in device), device
    report("journalctl -u netcfg.service -o verbose (a device entry)",
           journal("-o", "verbose", f"NETCFG_DEVICE_PATH={Session.path}"))


def test_systemctl_stop_tears_everything_down():
    stop_unit()
    assert Session.ifname not in links()
    assert routes("proto", "111") == []
    assert VPN_DNS not in sh("resolvectl dns", check=False)
    assert state_files() == []
    Session.client.release()


def test_resolv_conf_somark_and_dco_under_the_hardened_unit(openvpn):
    """The file backend (a new /etc/resolv.conf by rename; the record in the
    state dir), the --set-somark rule and table, ProtectSocket's host route
    and a DCO link (the module autoloads), all under the same unit."""
    name, address, gateway = UPLINK
    sh(f"ip link add {name} type dummy && ip addr add {address} dev {name} && ip link set {name} up"
       f" && ip route add default via {gateway}")
    set_options(f"--dns-backend resolv-conf --set-somark {SOMARK:#x}")
    try:
        client = run_client(SYSTEM_BUS, device_steps("files", protect=True, dco_ifname="sysdco0"),
                            user=openvpn.name, hold=True, timeout=180)
        assert_ok(client.results)
        resolv_conf = Path("/etc/resolv.conf")
        assert not resolv_conf.is_symlink() and f"nameserver {VPN_DNS}" in resolv_conf.read_text()
        assert "dns-resolv-conf.json" in state_files()
        assert f"fwmark {SOMARK:#x} lookup 111" in sh("ip rule")
        assert f"default via {gateway}" in sh("ip route show table 111")
        assert any(r["dst"] == REMOTE for r in routes("proto", "111"))
        assert links()["sysdco0"]["linkinfo"]["info_kind"] in ("ovpn-dco", "ovpn")
        report("resolv.conf written by netcfg under the unit", resolv_conf.read_text())
        stop_unit()
        client.release()
        assert os.readlink("/etc/resolv.conf").endswith("/run/systemd/resolve/stub-resolv.conf")
        assert "sysdco0" not in links() and "fwmark" not in sh("ip rule")
        assert routes("proto", "111") == [] and state_files() == []
    finally:
        set_options(None)
        sh(f"ip link del {name}", check=False)


def test_openresolv_under_the_hardened_unit(openvpn):
    sh("dpkg --purge systemd-resolved")
    sh(f"dpkg -i {GUEST_DEBS}/openresolv/*.deb")
    set_options("--dns-backend openresolv")
    try:
        client = run_client(SYSTEM_BUS, device_steps("openresolv"), user=openvpn.name, hold=True, timeout=180)
        assert_ok(client.results)
        ifname = ifname_of(client.results)
        assert f"nameserver {VPN_DNS}" in sh(f"resolvconf -l '{ifname}.netcfg'")
        assert f"nameserver {VPN_DNS}" in Path("/etc/resolv.conf").read_text()
        stop_unit()
        client.release()
        assert VPN_DNS not in sh("resolvconf -l", check=False) and VPN_DNS not in Path("/etc/resolv.conf").read_text()
    finally:
        set_options(None)


def test_dpkg_remove_leaves_nothing_and_gives_the_files_back():
    ours = [p for p in sh(f"dpkg -L {PKG}").splitlines() if p and not Path(p).is_dir()]
    out = sh(f"dpkg -r {PKG}")
    report("dpkg -r", out)
    for path in (ACTIVATION, POLICY):
        assert STANDIN in path.read_text(), f"{path} not given back"
        assert not Path(f"{path}.distrib").exists()
        assert sh(f"dpkg-divert --listpackage {path}").strip() == ""
    left = [p for p in ours if os.path.lexists(p) and Path(p) not in (ACTIVATION, POLICY)]
    assert left == ["/etc/netcfg/netcfg.yaml"], left  # a conffile: dpkg keeps it until purge
    assert not Path("/opt/ovpn3-netcfg").exists() and not STATE_DIR.exists()
    sh(f"dpkg --purge {PKG}")
    assert names_like_ours() == Session.names_before  # the stand-in's two files among them
