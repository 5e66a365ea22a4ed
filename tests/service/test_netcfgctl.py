"""netcfgctl against the real service on the test bus: its JSON checked against the kernel.

Each test runs the real `netcfgctl` (tests/support/ctl.py) as root or as
another user; devices are made by the test's own root connection and
established for real in the test's namespace, so the kernel's links,
addresses, routes (protocol 111) and rules are what the JSON is compared
with (`ip -j`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket

import pytest
from dbus_fast import Message

from support.client import arun_client
from support.ctl import ctl, start_ctl
from support.lifecycle import ADDR4, ADDR6, NETWORKS, Netcfg, mgr_step, tun_name, wait_until
from support.netns import UPLINK_IF

pytestmark = pytest.mark.asyncio

EXCLUDE = ["203.0.113.0", 24, -1, False, True]
MANAGER = "/net/openvpn/v3/netcfg"


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
        for args in (["status"], ["devices"], ["protections"], ["subscribers"], ["config", "show"]):
            ran = await ctl(bus.address, *args)
            assert ran.returncode == 0 and max(map(len, ran.stdout.splitlines())) <= 80, ran
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


async def test_watch_sees_a_real_establish_and_destroy_and_leaves_cleanly(service, netns, root_bus, bus):
    watch = await start_ctl(bus.address, "watch", "--json")
    try:
        ready = await asyncio.wait_for(watch.stderr.readline(), 30)
        assert b"watching NetworkChange events as :" in ready, ready
        name = ready.decode().split(" as ")[1].split()[0]
        subscribers = (await Netcfg(root_bus).call(MANAGER, "NotificationSubscriberList")).body[0]
        assert (name, 2047) in subscribers
        nc, path, fd = await _device(root_bus, networks=NETWORKS[:1])
        ifname = tun_name(fd)
        await nc.destroy(path)
        os.close(fd)
        events = []
        while not events or events[-1]["type"] != "DEVICE_REMOVED":
            events.append(json.loads(await asyncio.wait_for(watch.stdout.readline(), 30)))
        types = [e["type"] for e in events]
        assert types == ["DEVICE_ADDED", "IPADDR_ADDED", "IPADDR_ADDED", "ROUTE_ADDED",
                         "ROUTE_REMOVED", "IPADDR_REMOVED", "IPADDR_REMOVED", "DEVICE_REMOVED"], types
        assert {e["device"] for e in events} == {ifname} and {e["path"] for e in events} == {path}
        assert events[3]["details"]["subnet"] == NETWORKS[0][0] and events[0]["time"]
        watch.send_signal(signal.SIGINT)  # Ctrl-C
        assert await asyncio.wait_for(watch.wait(), 30) == 0
        # it unsubscribed before leaving (not merely by disconnecting: the service logs which)
        await wait_until(lambda: "Subscription removed: '%s'" % name in service.log_text(), what="unsubscribe")
        assert (name, 2047) not in (await Netcfg(root_bus).call(MANAGER, "NotificationSubscriberList")).body[0]
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()


async def test_watch_filters_and_ends_when_netcfg_leaves(service, root_bus, bus):
    watch = await start_ctl(bus.address, "watch", "--type", "device", "--device", "nothing-matches")
    ready = await asyncio.wait_for(watch.stderr.readline(), 30)
    name = ready.decode().split(" as ")[1].split()[0]
    assert (name, 3) in (await Netcfg(root_bus).call(MANAGER, "NotificationSubscriberList")).body[0]
    nc, path, fd = await _device(root_bus, networks=[])
    await nc.destroy(path)
    os.close(fd)
    await service.stop()
    out, err = await asyncio.wait_for(watch.communicate(), 30)
    assert watch.returncode == 3 and out == b"" and b"left the bus" in err, err
    bad = await ctl(bus.address, "watch", "--type", "bogus")
    assert bad.returncode == 2 and "unknown event type 'bogus'" in bad.stderr


async def test_subscribers_and_unsubscribe_as_the_admin_tool(service, root_bus, bus, users):
    held = await arun_client(bus.address, [{"unique_name": True}, mgr_step("NotificationSubscribe", "u", [0x30])],
                             user="openvpn", hold=True)
    try:
        name = held.results[0]["body"][0]
        assert held.results[1]["ok"], held.results
        # What openvpn3-admin netcfg-service --list-subscribers does: the list, then each PID from the bus.
        nc = Netcfg(root_bus)
        listed = (await nc.call(MANAGER, "NotificationSubscriberList")).body[0]
        assert [list(x) for x in listed] == [[name, 0x30]]
        pid = (await root_bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                           interface="org.freedesktop.DBus", member="GetConnectionUnixProcessID",
                                           signature="s", body=[name]))).body[0]
        assert pid == held.pid
        [sub] = (await ctl(bus.address, "subscribers", "--json")).json()["subscribers"]
        assert sub == {"bus_name": name, "mask": 0x30, "types": ["ROUTE_ADDED", "ROUTE_REMOVED"],
                       "uid": users.openvpn.uid, "user": "openvpn", "pid": held.pid, "process": sub["process"]}
        assert sub["process"].startswith("python")
        text = await ctl(bus.address, "subscribers")
        assert name in text.stdout and "ROUTE_ADDED, ROUTE_REMOVED (mask 48)" in text.stdout
        # --unsubscribe NAME: NotificationUnsubscribe(name) as root
        assert (await ctl(bus.address, "unsubscribe", name)).returncode == 0
        assert (await nc.call(MANAGER, "NotificationSubscriberList")).body[0] == []
        again = await ctl(bus.address, "unsubscribe", name)
        assert again.returncode == 1 and "Subscription not found" in again.stderr
        # The admin tool's own error for a name that is not a subscriber, from the wire.
        err = await nc.error(MANAGER, "NotificationUnsubscribe", "s", [name])
        assert err.name == "net.openvpn.v3.netcfg.error"
    finally:
        await held.release()


@pytest.mark.parametrize("user", ["netcfg-test", "openvpn"])
async def test_other_users_get_a_clear_refusal(service, root_bus, bus, user, users):
    for args in (["status"], ["devices", "--json"], ["show", "tun0"], ["protections"], ["subscribers"],
                 ["watch"], ["log-level", "5"], ["cleanup", "--pid", "1"], ["cleanup", "tun0"], ["config", "show"],
                 ["unsubscribe", ":1.1"]):
        if user == "openvpn" and args[0] in ("watch", "log-level"):
            continue  # the original's policy lets openvpn subscribe and set the log level
        ran = await ctl(bus.address, *args, user=user)
        assert ran.returncode == 4, (args, ran)
        assert ran.stderr.startswith("netcfgctl: ") and "permission denied" in ran.stderr, (args, ran.stderr)
        assert "Traceback" not in ran.stderr and len(ran.stderr.splitlines()) == 1, ran.stderr
    # Reading the log level is for everyone, as Properties.Get on the manager is.
    assert (await ctl(bus.address, "log-level", "--json", user=user)).json() == {"log_level": 6}
    assert (await ctl(bus.address, "--version", user=user)).stdout.startswith("netcfgctl")
    await service.assert_healthy()


async def test_admin_interface_is_root_only_by_policy_and_by_check(service, root_bus, bus, users):
    nc = Netcfg(root_bus)
    xml = await nc.introspect()
    original, admin = xml.split('<interface name="net.openvpn.v3.netcfg">')[1].split("</interface>")[:2]
    assert '<interface name="net.openvpn.v3.netcfg.admin">' in admin
    assert "ListDevices" not in original and '<method name="NotificationSubscriberList">' in original
    admin_get = mgr_step("Get", "ss", ["net.openvpn.v3.netcfg.admin", "dns_backend"],
                         interface="org.freedesktop.DBus.Properties")
    list_devices = mgr_step("ListDevices", interface="net.openvpn.v3.netcfg.admin")
    for user in ("openvpn", "netcfg-test"):
        res = await arun_client(bus.address, [admin_get, list_devices], user=user)
        assert [r.get("error") for r in res] == ["org.freedesktop.DBus.Error.AccessDenied"] * 2, res
    # The policy refuses the method before the service sees it; Get reaches the service, which refuses it.
    assert "Rejected send message" in res[1]["text"] or "rejected" in res[1]["text"].lower(), res[1]
    assert "access denied" in res[0]["text"], res[0]
    res = await arun_client(bus.address, [admin_get, list_devices, mgr_step("Get", "ss", ["", "version"],
                                                                           interface="org.freedesktop.DBus.Properties")])
    assert res[0]["body"] == [{"variant": ["s", "none"]}] and res[1]["ok"], res
    assert res[2]["body"] == [{"variant": ["s", "netcfg 0.1.0"]}]


async def test_log_level_reads_and_sets(service, root_bus, bus):
    assert (await ctl(bus.address, "log-level")).stdout.strip() == "log level 6"
    assert (await ctl(bus.address, "log-level", "3")).returncode == 0
    assert await Netcfg(root_bus).get(MANAGER, "log_level") == 3
    bad = await ctl(bus.address, "log-level", "9")
    assert bad.returncode == 2 and "0-6" in bad.stderr


@pytest.mark.netns(uplink=True)
async def test_cleanup_of_a_device_and_of_a_process(service, netns, root_bus, bus):
    steps = [mgr_step("CreateVirtualInterface", "s", [name]) for name in ("left1", "left2")]
    steps += [mgr_step("ProtectSocket", "sbo", ["198.51.100.7", False, "/"])]
    held = await arun_client(bus.address, steps, user="openvpn", hold=True)
    try:
        assert all(r["ok"] for r in held.results), held.results
        paths = [r["body"][0] for r in held.results[:2]]
        assert len(netns.netcfg_routes()) == 1  # the host route
        one = await ctl(bus.address, "cleanup", paths[0].rsplit("/", 1)[-1])
        assert one.returncode == 0, one.stderr
        names = [d["path"] for d in (await ctl(bus.address, "devices", "--json")).json()["devices"]]
        assert names == [paths[1]]
        rest = await ctl(bus.address, "cleanup", "--pid", str(held.pid))
        assert rest.returncode == 0 and "1 device(s) and 1 protection(s)" in rest.stdout, rest
        assert (await ctl(bus.address, "devices", "--json")).json() == {"devices": []}
        assert netns.netcfg_routes() == []
        missing = await ctl(bus.address, "cleanup", "left1")
        assert missing.returncode == 1 and "no device 'left1'" in missing.stderr
        assert (await ctl(bus.address, "cleanup")).returncode == 2
    finally:
        await held.release()
