"""NetworkChange: subscriptions, filters, every event type, order, unicast.

Real subscriber processes on the test bus (tests/support/subscriber.py,
dbus-fast) as the users the policy permits (openvpn, root) and one it does
not (netcfg-test); `busctl monitor` (systemd's, eavesdropping as root) is
the independent view of what went over the wire, and GLib's `gdbus monitor`
as a bystander that must see none of it.  DNS events need a DNS
backend (issue 6); their details are checked in tests/unit/test_signals.py.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from dbus_fast import Variant

from support import NETCFG_MANAGER_PATH
from support.client import arun_client
from support.lifecycle import tun_name
from support.subscriber import Subscriber
from support.dbuscalls import ACCESS_DENIED, NETCFG_ERROR, Netcfg

DEVICE_ADDED, DEVICE_REMOVED, IPADDR_ADDED, IPADDR_REMOVED = 1, 2, 4, 8
ROUTE_ADDED, ROUTE_REMOVED, ROUTE_EXCLUDED = 16, 32, 64

ADDRESSES = [("10.8.0.2", 24, "10.8.0.1", False), ("fd00:8::2", 64, "fd00:8::1", True)]
NETWORKS = [("192.168.100.0", 24, -1, False, False), ("fd00:100::", 48, 50, True, False),
            ("198.51.100.0", 24, -1, False, True)]


def mgr(member, signature="", body=None):
    return {"destination": "net.openvpn.v3.netcfg", "path": NETCFG_MANAGER_PATH,
            "interface": "net.openvpn.v3.netcfg", "member": member, "signature": signature, "body": body or []}


def established(ifname: str) -> list[list]:
    """Spec 8: DEVICE_ADDED, IPADDR_ADDED each, ROUTE_ADDED/EXCLUDED each; never def1."""
    o = {"origin": "netcfg"}
    return [
        [DEVICE_ADDED, ifname, o],
        [IPADDR_ADDED, ifname, {"ip_address": "10.8.0.2", "prefix": "24", "prefix_size": "24", "ip_version": "4", **o}],
        [IPADDR_ADDED, ifname, {"ip_address": "fd00:8::2", "prefix": "64", "prefix_size": "64", "ip_version": "6", **o}],
        [ROUTE_ADDED, ifname, {"ip_version": "4", "subnet": "192.168.100.0", "prefix": "24", "prefix_size": "24",
                               "gateway": "10.8.0.1", **o}],
        [ROUTE_ADDED, ifname, {"ip_version": "6", "subnet": "fd00:100::", "prefix": "48", "prefix_size": "48",
                               "gateway": "fd00:8::1", **o}],
        [ROUTE_EXCLUDED, ifname, {"ip_version": "4", "subnet": "198.51.100.0", "prefix": "24", "prefix_size": "24",
                                  "gateway": "10.8.0.1", **o}],
    ]


def removed(ifname: str) -> list[list]:
    """Teardown: ROUTE_REMOVED (not excluded ones, no gateway), IPADDR_REMOVED, DEVICE_REMOVED."""
    o = {"origin": "netcfg"}
    return [
        [ROUTE_REMOVED, ifname, {"ip_version": "4", "subnet": "192.168.100.0", "prefix": "24", "prefix_size": "24", **o}],
        [ROUTE_REMOVED, ifname, {"ip_version": "6", "subnet": "fd00:100::", "prefix": "48", "prefix_size": "48", **o}],
        [IPADDR_REMOVED, ifname, {"ip_address": "10.8.0.2", "prefix": "24", "prefix_size": "24", "ip_version": "4", **o}],
        [IPADDR_REMOVED, ifname, {"ip_address": "fd00:8::2", "prefix": "64", "prefix_size": "64", "ip_version": "6", **o}],
        [DEVICE_REMOVED, ifname, o],
    ]


class BusMonitor:
    """`busctl monitor --json=short` as root: every message on the bus."""

    async def start(self, address: str) -> "BusMonitor":
        self.proc = await asyncio.create_subprocess_exec(
            "busctl", f"--address={address}", "monitor", "--json=short",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, limit=1 << 24)
        first = await asyncio.wait_for(self.proc.stdout.readline(), 10)
        assert b"Monitoring" in first, first
        return self

    async def stop(self) -> list[dict]:
        await asyncio.sleep(0.5)
        self.proc.terminate()
        out, _ = await self.proc.communicate()
        return [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]


async def gdbus_monitor(address: str, user) -> asyncio.subprocess.Process:
    """GLib's `gdbus monitor` of everything netcfg emits, as a user who did not subscribe."""
    proc = await asyncio.create_subprocess_exec(
        "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
        # stdbuf: gdbus's stdout is a pipe, block-buffered; SIGTERM would lose it.
        "stdbuf", "-oL", "gdbus", "monitor", "--address", address, "--dest", "net.openvpn.v3.netcfg",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    first = await asyncio.wait_for(proc.stdout.readline(), 10)
    assert b"Monitoring" in first, first
    # The match rule follows the name look-up: wait until gdbus has the owner.
    owner = await asyncio.wait_for(proc.stdout.readline(), 10)
    assert b"is owned by" in owner, owner
    return proc


async def glib_sees_broadcasts(proc: asyncio.subprocess.Process, root_bus, path: str) -> None:
    """Wait until `gdbus monitor` prints a PropertiesChanged of `path`.

    gdbus prints "is owned by" and only then sends its AddMatch: a signal
    sent right after may beat the match rule (seen on dbus-broker).  Setting
    a property until gdbus shows one makes sure its match is in effect.
    """
    for mtu in range(1300, 1400):
        await Netcfg(root_bus).call(path, "Set", "ssv", ["net.openvpn.v3.netcfg", "mtu", Variant("q", mtu)],
                   "org.freedesktop.DBus.Properties")
        try:
            while b"PropertiesChanged" not in await asyncio.wait_for(proc.stdout.readline(), 0.1):
                pass
            return
        except asyncio.TimeoutError:
            continue
    raise AssertionError("gdbus monitor never showed a PropertiesChanged")


def network_changes(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m.get("member") == "NetworkChange"]


@pytest.mark.asyncio
async def test_subscription_calls(service, bus, users):
    """Argument checks, messages and who may call (spec 2.2, 3, 8)."""
    openvpn = await arun_client(bus.address, [
        {"unique_name": True},
        mgr("NotificationSubscribe", "u", [0]),
        mgr("NotificationSubscribe", "u", [65536]),
        mgr("NotificationSubscribe", "u", [65535]),  # accepted (the message says "< 65535")
        mgr("NotificationSubscribe", "u", [21]),  # overwrites
        mgr("NotificationSubscriberList"),
        mgr("NotificationUnsubscribe", "s", [":1.99999"]),  # non-root: removes its own
        mgr("NotificationUnsubscribe", "s", [""]),  # ... and now has none
    ], user=users.openvpn.name)
    me = openvpn[0]["body"][0]
    assert openvpn[1] == {"ok": False, "error": NETCFG_ERROR, "text": "Subscription filter flag must be > 0"}
    assert openvpn[2] == {"ok": False, "error": NETCFG_ERROR, "text": "Invalid subscription flag, must be < 65535"}
    assert openvpn[3]["ok"] and openvpn[4]["ok"]
    assert openvpn[5]["error"] == ACCESS_DENIED  # the list is root's
    assert openvpn[6]["ok"]
    assert openvpn[7]["error"] == ACCESS_DENIED
    assert openvpn[7]["text"] == (f"Authorization failed for {me} performing method call "
                                  "net.openvpn.v3.netcfg.NotificationUnsubscribe in object /net/openvpn/v3/netcfg")

    root = await arun_client(bus.address, [
        mgr("NotificationSubscribe", "u", [2047]),
        mgr("NotificationUnsubscribe", "s", [""]),  # root must name one ([quirk] kept)
        mgr("NotificationUnsubscribe", "s", [":1.99999"]),
        {"unique_name": True},
        mgr("NotificationSubscriberList"),
    ])
    assert root[1] == {"ok": False, "error": NETCFG_ERROR, "text": "Failed to retrieve subscriber"}
    assert root[2] == {"ok": False, "error": NETCFG_ERROR, "text": "Subscription not found for ':1.99999'"}
    assert root[4]["body"] == [[[root[3]["body"][0], 2047]]]

    other = await arun_client(bus.address, [mgr("NotificationSubscribe", "u", [2047]),
                                            mgr("NotificationUnsubscribe", "s", [""]),
                                            mgr("NotificationSubscriberList")], user=users.unprivileged.name)
    assert all(r["error"] == ACCESS_DENIED for r in other), other  # the bus policy says no


@pytest.mark.asyncio
async def test_subscriber_list_and_leaving_the_bus(service, bus, users, root_bus):
    a = await Subscriber.start(bus.address, users.openvpn.name, mask=21)
    b = await Subscriber.start(bus.address, None, mask=2047)
    denied = await Subscriber.start(bus.address, users.unprivileged.name, mask=2047)
    assert a.subscribed and b.subscribed
    assert not denied.subscribed and denied.error == ACCESS_DENIED
    listing = (await Netcfg(root_bus).call(NETCFG_MANAGER_PATH, "NotificationSubscriberList")).body[0]
    assert sorted(map(list, listing)) == sorted([[a.name, 21], [b.name, 2047]])
    assert (await a.call("NotificationUnsubscribe", "s", [""]))["ok"]
    await b.kill()  # leaves the bus without a word: its subscription ends too
    for _ in range(100):
        listing = (await Netcfg(root_bus).call(NETCFG_MANAGER_PATH, "NotificationSubscriberList")).body[0]
        if not listing:
            break
        await asyncio.sleep(0.05)
    assert listing == []
    await a.close()
    await denied.close()


@pytest.mark.asyncio
@pytest.mark.netns(uplink=True)
async def test_events_filters_order_unicast(service, bus, users, root_bus, netns):
    monitor = await BusMonitor().start(bus.address)
    glib_bystander = await gdbus_monitor(bus.address, users.unprivileged)
    # Nobody subscribed: nothing may be sent at all.
    quiet = await Netcfg(root_bus).configured("quiet", ADDRESSES, NETWORKS)
    await glib_sees_broadcasts(glib_bystander, root_bus, quiet)
    fd = await Netcfg(root_bus).establish(quiet)
    await Netcfg(root_bus).call(quiet, "Destroy")
    os.close(fd)

    everything = await Subscriber.start(bus.address, users.openvpn.name, mask=2047)
    routes_only = await Subscriber.start(bus.address, None, mask=ROUTE_ADDED)
    bystander = await Subscriber.start(bus.address, users.unprivileged.name, mask=None)
    path = await Netcfg(root_bus).configured("events", ADDRESSES, NETWORKS, reroute_ipv4=True)
    fd = await Netcfg(root_bus).establish(path)
    ifname = tun_name(fd)
    await Netcfg(root_bus).call(path, "Disable")
    fd2 = await Netcfg(root_bus).establish(path)
    ifname2 = tun_name(fd2)
    await Netcfg(root_bus).call(path, "Destroy")
    os.close(fd)
    os.close(fd2)

    want = established(ifname) + removed(ifname) + established(ifname2) + removed(ifname2)
    assert await everything.wait_changes(len(want)) == want
    want_routes = [c for c in want if c[0] == ROUTE_ADDED]
    assert await routes_only.wait_changes(len(want_routes)) == want_routes
    for sub in (everything, routes_only, bystander):
        await sub.settle()
    assert len(everything.changes()) == len(want) and len(routes_only.changes()) == len(want_routes)
    assert bystander.changes() == []  # unicast: a bystander listening to all signals gets none
    for s in everything.signals() + routes_only.signals():
        assert (s["path"], s["interface"]) == (path, "net.openvpn.v3.netcfg")
    for sub in (everything, routes_only, bystander):
        await sub.close()
    glib_bystander.terminate()
    seen_by_glib = (await glib_bystander.communicate())[0].decode()
    assert "PropertiesChanged" in seen_by_glib  # it does see netcfg's broadcasts ...
    assert "NetworkChange" not in seen_by_glib  # ... but no unicast meant for others

    wire = network_changes(await monitor.stop())
    assert len(wire) == len(want) + len(want_routes)
    assert {m["destination"] for m in wire} == {everything.name, routes_only.name}
    assert all(m["path"] == path and m["payload"]["type"] == "usa{ss}" for m in wire)
    assert [m["payload"]["data"] for m in wire if m["destination"] == everything.name] == want


@pytest.mark.asyncio
async def test_unsubscribed_gets_nothing(service, bus, users, root_bus):
    sub = await Subscriber.start(bus.address, users.openvpn.name, mask=2047)
    assert (await sub.call("NotificationUnsubscribe", "s", ["ignored for non-root"]))["ok"]
    path = await Netcfg(root_bus).configured("unsub", ADDRESSES[:1], NETWORKS[:1])
    fd = await Netcfg(root_bus).establish(path)
    await Netcfg(root_bus).call(path, "Destroy")
    os.close(fd)
    await sub.settle()
    assert sub.changes() == []
    await sub.close()
