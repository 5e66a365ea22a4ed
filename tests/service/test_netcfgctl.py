"""netcfgctl against the real service on the test bus: its JSON checked against the kernel.

Each test runs the real `netcfgctl` (tests/support/ctl.py) as root or as
another user; devices are made by the test's own root connection and
established for real in the test's namespace, so the kernel's links,
addresses, routes (protocol 111) and rules are what the JSON is compared
with (`ip -j`).
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from dbus_fast import Message

from support.ctl import ctl
from support.lifecycle import ADDR4, ADDR6, NETWORKS, Netcfg, tun_name, wait_until
from support.netns import UPLINK_IF

pytestmark = pytest.mark.asyncio

EXCLUDE = ["203.0.113.0", 24, -1, False, True]


def _prefixlen(d: dict) -> str:
    return f"{d['dst']}/{d['prefix']}" if d["prefix"] else "default"


def kernel_routes(netns) -> set[tuple]:
    """(family, dst/prefix, dev, table) of every protocol-111 route, from `ip -j`."""
    out = set()
    for r in netns.netcfg_routes():
        table = {"main": 254}.get(r["table"], r["table"])
        out.add((r["family"], r["dst"] if "/" in r["dst"] or r["dst"] == "default" else
                 r["dst"] + ("/128" if r["family"] == 6 else "/32"), r.get("dev"), int(table)))
    return out


def json_routes(rows: list[dict]) -> set[tuple]:
    return {(r["family"], _prefixlen(r) if r["prefix"] else "default", r["dev"], r["table"])
            for r in rows if r["kind"] == "route" and r.get("proto") == 111 and r["kernel"]}


async def _device(root_bus, name="ctl", networks=NETWORKS + [EXCLUDE]):
    nc = Netcfg(root_bus)
    path = await nc.create(name)
    await nc.configure(path, networks=networks, reroute_ipv4=True)
    await nc.call(path, "AddDNS", "as", [["10.8.0.1"]])
    fd = await nc.establish(path)
    return nc, path, fd


@pytest.mark.netns(uplink=True)
async def test_status_devices_show_agree_with_the_kernel(service, netns, root_bus, bus):
    nc, path, fd = await _device(root_bus)
    try:
        ifname = tun_name(fd)
        status = (await ctl(bus.address, "status", "--json")).json()
        assert status["devices"] == 1 and status["protections"] == 0
        assert status["dns_backend"] == "none" and status["redirect_method"] == "host-route"
        assert status["version"] == "netcfg 0.1.0" and status["so_mark"] is None
        assert status["config_file"] == str(service.state_dir / "netcfg.json")
        assert status["state_dir"] == str(service.state_dir) and status["uptime_seconds"] >= 0

        [dev] = (await ctl(bus.address, "--json", "devices")).json()["devices"]
        link = netns.link(ifname)
        assert (dev["path"], dev["name"], dev["state"], dev["kind"]) == (path, ifname, "established", "tun")
        assert dev["ifindex"] == link["ifindex"]
        assert dev["owner"]["uid"] == 0 and dev["owner"]["pid"] == os.getpid() and dev["owner"]["user"] == "root"
        assert dev["owner"]["bus_name"] == root_bus.unique_name
        kernel_addrs = {f"{a['local']}/{a['prefixlen']}" for a in netns.addresses(ifname) if a["scope"] == "global"}
        assert set(dev["addresses"]) == kernel_addrs == {f"{ADDR4[0]}/{ADDR4[1]}", f"{ADDR6[0]}/{ADDR6[1]}"}
        assert dev["routes"] == len(netns.netcfg_routes())  # 4 networks + 2 def1 + the exclude route
        assert dev["dns"]["servers"] == ["10.8.0.1"]

        detail = (await ctl(bus.address, "show", ifname, "--json")).json()["device"]
        assert detail["drift"] == 0, detail["objects"]
        assert detail["link"] == {"ifindex": link["ifindex"], "name": ifname, "kind": "tun", "mtu": 1420,
                                  "up": True, "kernel": True, "drift": []}
        assert json_routes(detail["objects"]) == kernel_routes(netns)
        assert {r["dev"] for r in detail["objects"] if r["kind"] == "route" and r["state"] == "ok"} == {ifname, UPLINK_IF}
        ours = {f"{a['address']}/{a['prefix']}" for a in detail["objects"] if a["kind"] == "address" and a["ledger"]}
        assert ours == kernel_addrs
        text = await ctl(bus.address, "show", path)
        assert text.returncode == 0 and "no drift" in text.stdout
        assert max(map(len, text.stdout.splitlines())) <= 80, text.stdout
        assert "\033[" not in text.stdout  # not a terminal: no colour
    finally:
        await nc.destroy(path)
        os.close(fd)
    assert (await ctl(bus.address, "devices", "--json")).json() == {"devices": []}


@pytest.mark.netns(uplink=True)
async def test_show_marks_drift(service, netns, root_bus, bus):
    nc, path, fd = await _device(root_bus, networks=NETWORKS)
    try:
        ifname = tun_name(fd)
        netns.ip("route", "del", "192.168.100.0/24", "dev", ifname)  # someone removes one of ours
        netns.ip("route", "add", "10.77.0.0/16", "dev", ifname)  # and adds one of theirs

        async def drifted():
            d = (await ctl(bus.address, "show", ifname, "--json")).json()["device"]
            states = {(o["kind"], o.get("dst"), o["state"]) for o in d["objects"]}
            return d if {("route", "192.168.100.0", "removed"), ("route", "10.77.0.0", "foreign")} <= states else None

        detail = await wait_until(drifted, timeout=15)
        assert detail["drift"] == 2
        text = await ctl(bus.address, "show", ifname)
        flagged = [line for line in text.stdout.splitlines() if line.startswith("!")]
        assert len(flagged) == 2 and "drift: 2" in text.stdout, text.stdout
        netns.ip("route", "del", "10.77.0.0/16", "dev", ifname)
    finally:
        await nc.destroy(path)
        os.close(fd)


@pytest.mark.netns(uplink=True)
@pytest.mark.service(extra_args=["--set-somark", "0x4f56", "--somark-table", "222"])
async def test_protections_and_so_mark_agree_with_the_kernel(service, netns, root_bus, bus):
    nc = Netcfg(root_bus)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        reply = await root_bus.call(Message(destination="net.openvpn.v3.netcfg", path="/net/openvpn/v3/netcfg",
                                            interface="net.openvpn.v3.netcfg", member="ProtectSocket",
                                            signature="sbo", body=["198.51.100.9", False, "/"],
                                            unix_fds=[sock.fileno()]))
        assert reply.body == [True], reply.body
        data = (await ctl(bus.address, "protections", "--json")).json()
        [prot] = data["protections"]
        assert prot["remote"] == "198.51.100.9" and prot["owner"]["bus_name"] == root_bus.unique_name
        [host] = prot["routes"]
        kernel = {(r["dst"], r.get("dev"), r.get("gateway")) for r in netns.netcfg_routes() if r["table"] == "main"}
        assert kernel == {(f"{host['dst']}", host["dev"], host["gateway"])} == {("198.51.100.9", UPLINK_IF, "192.0.2.1")}
        mark = data["so_mark"]
        assert (mark["mark"], mark["table"], mark["priority"]) == (0x4F56, 222, 100)
        rules = {(r["family"], r.get("priority"), r.get("fwmark"), r.get("table")) for r in netns.rules(4) + netns.rules(6)
                 if str(r.get("protocol")) == "111"}
        assert rules == {(r["family"], r["priority"], f"{r['fwmark']:#x}", str(r["table"])) for r in mark["rules"]}
        table = {(r["family"], r.get("dev")) for r in netns.all_routes("222")}
        assert table == {(r["family"], r["dev"]) for r in mark["routes"]} and len(table) == 2
        status = (await ctl(bus.address, "status", "--json")).json()
        assert (status["so_mark"], status["so_mark_table"], status["protections"]) == (0x4F56, 222, 1)
    finally:
        await nc.call("/net/openvpn/v3/netcfg", "Cleanup")
        sock.close()
    assert (await ctl(bus.address, "protections", "--json")).json()["protections"] == []
