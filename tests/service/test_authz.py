"""Who may do what, with real other UIDs on the real bus (issue 3, spec 3).

Two layers:

* the bus policy (dbus-policy/net.openvpn.v3.netcfg.conf, loaded by the test
  bus): root and `openvpn` may send everything; every other user only
  Introspect and Properties.Get on the manager, and Peer.Ping.  Its denials
  come from the bus itself (AccessDenied, "Rejected send message" from dbus-daemon);
* the service: device methods and property writes only for the process that
  created the device (any of its connections) and root; the subscriber list
  only for root.  Its denials are AccessDenied with its own text.

Clients run through the client runner as `openvpn` (the VPN backend's
user), as the unprivileged `netcfg-test`, and as root.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from support.client import arun_client
from support.dbuscalls import (
    ACCESS_DENIED, INTERFACE, INTROSPECTABLE, MANAGER, NETCFG_ERROR, PEER,
    PROPERTIES, call, create_device, denied_by_bus, get, get_all, get_step, mstep, ok, set_step,
)

pytestmark = pytest.mark.asyncio

# Every device method and property write, each with values the creator may
# use, in an order that works (layer before Establish, Destroy last).
DEVICE_MEMBERS = [
    ("AddIPAddress", "susb", ["10.8.0.2", 24, "10.8.0.1", False]),
    ("SetRemoteAddress", "sb", ["192.0.2.1", False]),
    ("AddNetworks", "a(suibb)", [[["10.20.0.0", 16, -1, False, False]]]),
    ("AddDNS", "as", [["10.8.0.53"]]),
    ("AddDNSSearch", "as", [["example.org"]]),
    ("SetDNSSEC", "s", ["yes"]),
    ("SetDNSTransport", "s", ["dot"]),
    ("EnableDCO", "s", ["dco0"]),
    ("Set mtu", "q", 1400),
    ("Set layer", "u", 3),
    ("Set txqueuelen", "q", 100),
    ("Set reroute_ipv4", "b", True),
    ("Set reroute_ipv6", "b", True),
    ("Set dns_scope", "s", "tunnel"),
    ("Establish", "", []),
    ("Disable", "", []),
    ("Destroy", "", []),
]
# Not available in this build: a named error, but never AccessDenied.
MAY_FAIL_FOR_OWNER = {"EnableDCO"}

DEFAULTS = {"mtu": 1500, "layer": 0, "txqueuelen": 0, "reroute_ipv4": False, "reroute_ipv6": False,
            "dns_scope": "global", "dns_name_servers": [], "dns_search_domains": [], "dnssec_mode": "unset"}


def device_steps(path, **kw) -> list[dict]:
    """One step per entry of DEVICE_MEMBERS on `path` (a string or a ref)."""
    steps = []
    for member, sig, value in DEVICE_MEMBERS:
        if member.startswith("Set "):
            steps.append(set_step(path, member[4:], sig, value, **kw))
        else:
            steps.append(mstep(member, path=path, signature=sig, body=value, **kw))
    return steps


def assert_all_allowed(results: list[dict], who: str) -> None:
    for (member, _, _), r in zip(DEVICE_MEMBERS, results, strict=True):
        if member in MAY_FAIL_FOR_OWNER and not r["ok"]:
            assert r["error"] == NETCFG_ERROR, (who, member, r)
            continue
        assert r["ok"], (who, member, r)
        if member == "Establish":
            assert r["fds"] == 1 and r["fd_targets"] == ["/dev/net/tun"], (who, r)


def assert_denied(r: dict, by_bus: bool, what) -> None:
    assert not r["ok"] and r["error"] == ACCESS_DENIED, (what, r)
    assert denied_by_bus(r["text"]) == by_bus, (
        f"{what}: AccessDenied should come from {'the bus' if by_bus else 'the service'}: {r['text']}")


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# -- the creator and root ------------------------------------------------------
async def test_creator_may_use_every_member(service, bus, users, netns):
    steps = [mstep("CreateVirtualInterface", signature="s", body=["mine"]),
             {"unique_name": True},
             mstep("GetConnectionCredentials", path="/org/freedesktop/DBus", interface="org.freedesktop.DBus",
                   signature="s", body=[{"ref": [1, 0]}]) | {"destination": "org.freedesktop.DBus"},
             get_step({"ref": [0, 0]}, "owner"),
             get_step({"ref": [0, 0]}, "acl")]
    res = await arun_client(bus.address, steps + device_steps({"ref": [0, 0]}), user=users.openvpn.name)
    assert res[0]["ok"], res[0]
    creds = res[2]["body"][0]
    assert res[0]["body"][0].endswith(f"/{creds['ProcessID']['variant'][1]}_mine")
    assert res[3]["body"] == [{"variant": ["u", users.openvpn.uid]}]
    assert res[4]["body"] == [{"variant": ["au", [0, users.openvpn.uid]]}]
    assert_all_allowed(res[len(steps):], "creator")
    assert netns.link_names() == ["lo"]


async def test_creator_second_connection_is_allowed(service, bus, users):
    """The same process over another connection: "any of its connections"."""
    steps = [mstep("CreateVirtualInterface", signature="s", body=["twoconn"]),
             {"unique_name": True}, {"unique_name": True, "connection": 1}]
    res = await arun_client(bus.address, steps + device_steps({"ref": [0, 0]}, connection=1),
                            user=users.openvpn.name)
    assert res[0]["ok"], res[0]
    assert res[1]["body"] != res[2]["body"]
    assert_all_allowed(res[len(steps):], "creator's second connection")


async def test_matrix_on_one_device(service, bus, users, root_bus, netns):
    """A device of one openvpn process, tried by another openvpn process
    (service denies), by netcfg-test (bus denies) and by root (allowed)."""
    creator = await arun_client(bus.address, [mstep("CreateVirtualInterface", signature="s", body=["shared"])],
                                user=users.openvpn.name, hold=True)
    try:
        path = creator.results[0]["body"][0]
        assert f"/{creator.pid}_shared" in path

        # Another process of the same user: every write refused by the service;
        # reads are open.  ProtectSocket naming the device and Cleanup do not
        # reach it either.
        extra = [get_step(path, "mtu"), get_step(path, "owner"),
                 mstep("ProtectSocket", signature="sbo", body=["192.0.2.1", False, path]),
                 mstep("Cleanup")]
        res = await arun_client(bus.address, device_steps(path) + extra, user=users.openvpn.name)
        for (member, _, _), r in zip(DEVICE_MEMBERS, res):
            assert_denied(r, by_bus=False, what=("same user, other process", member))
        tail = res[len(DEVICE_MEMBERS):]
        assert tail[0]["body"] == [{"variant": ["q", 1500]}]
        assert tail[1]["body"] == [{"variant": ["u", users.openvpn.uid]}]
        assert_denied(tail[2], by_bus=False, what="ProtectSocket on another's device")
        assert tail[3]["ok"], tail[3]

        # Another user: the bus policy refuses before the service sees anything.
        res = await arun_client(bus.address, device_steps(path), user=users.unprivileged.name)
        for (member, _, _), r in zip(DEVICE_MEMBERS, res):
            assert_denied(r, by_bus=True, what=("other user", member))

        # Nothing changed, nothing reached the kernel.
        props = await get_all(root_bus, path)
        assert {k: props[k] for k in DEFAULTS} == DEFAULTS
        assert props["device_name"] == "shared" and props["owner"] == users.openvpn.uid
        assert netns.link_names() == ["lo"]

        # Root may do everything, on a device it did not create.
        res = await arun_client(bus.address, device_steps(path), user=None)
        assert_all_allowed(res, "root")
        assert ok(await call(root_bus, "FetchInterfaceList")) == [[]]
        assert creator.alive()
    finally:
        await creator.kill()


async def test_owner_and_acl(service, bus, users, root_bus):
    creator = await arun_client(bus.address, [mstep("CreateVirtualInterface", signature="s", body=["owned"])],
                                user=users.openvpn.name, hold=True)
    try:
        path = creator.results[0]["body"][0]
        assert await get(root_bus, path, "owner") == users.openvpn.uid
        assert await get(root_bus, path, "acl") == [0, users.openvpn.uid]
        mine = await create_device(root_bus, "rootdev")
        assert await get(root_bus, mine, "owner") == 0
        assert await get(root_bus, mine, "acl") == [0]
        # The creator itself may not touch root's device.
        res = await arun_client(bus.address, [set_step(mine, "mtu", "q", 1400)], user=users.openvpn.name)
        assert_denied(res[0], by_bus=False, what="openvpn on root's device")
    finally:
        await creator.kill()


# -- FetchInterfaceList, NotificationSubscriberList -------------------------------
async def test_fetch_interface_list_is_filtered(service, bus, users, root_bus):
    fetch = mstep("FetchInterfaceList")
    b = await arun_client(bus.address, [mstep("CreateVirtualInterface", signature="s", body=["bdev"])],
                          user=users.openvpn.name, hold=True)
    a = None
    try:
        a = await arun_client(bus.address, [mstep("CreateVirtualInterface", signature="s", body=["adev"]),
                                            fetch, {**fetch, "connection": 1}],
                              user=users.openvpn.name, hold=True)
        a_path, b_path = a.results[0]["body"][0], b.results[0]["body"][0]
        assert a.results[1]["body"] == [[a_path]]
        assert a.results[2]["body"] == [[a_path]]  # any connection of the creator
        r_path = await create_device(root_bus, "rdev")

        c = await arun_client(bus.address, [fetch], user=users.openvpn.name)
        assert c[0]["body"] == [[]], "a process without devices sees none"
        listed = ok(await call(root_bus, "FetchInterfaceList"))[0]
        assert sorted(listed) == sorted([a_path, b_path, r_path])
        res = await arun_client(bus.address, [fetch], user=users.unprivileged.name)
        assert_denied(res[0], by_bus=True, what="FetchInterfaceList as netcfg-test")

        # Creators leaving the bus take their devices along.
        await a.kill()
        await b.kill()

        async def only_root_left() -> bool:
            return ok(await call(root_bus, "FetchInterfaceList"))[0] == [r_path]

        await wait_until(only_root_left, what="the creators' devices to go")
    finally:
        for held in (a, b):
            if held is not None:
                await held.kill()


async def test_notification_subscriber_list_is_root_only(service, bus, users, root_bus):
    listing = mstep("NotificationSubscriberList")
    res = await arun_client(bus.address, [mstep("NotificationSubscribe", signature="u", body=[1]), listing],
                            user=users.openvpn.name)
    assert res[0]["ok"], res
    assert_denied(res[1], by_bus=False, what="NotificationSubscriberList as openvpn")
    res = await arun_client(bus.address, [listing], user=users.unprivileged.name)
    assert_denied(res[0], by_bus=True, what="NotificationSubscriberList as netcfg-test")
    body = ok(await call(root_bus, "NotificationSubscriberList"))
    assert isinstance(body[0], list)


# -- the bus policy for everyone else ---------------------------------------------
async def test_unprivileged_user_policy(service, bus, users, root_bus):
    """netcfg-test may Introspect and Get on the manager, and Ping; the bus
    itself refuses everything else."""
    device = await create_device(root_bus, "target")
    allowed = [
        mstep("Introspect", interface=INTROSPECTABLE),
        get_step(MANAGER, "version"),
        get_step(MANAGER, "log_level"),
        get_step(MANAGER, "global_dns_servers"),
        mstep("Ping", interface=PEER),
        mstep("Ping", interface=PEER, path=device),
        mstep("Ping", interface=PEER, path="/"),
    ]
    denied = [
        mstep("CreateVirtualInterface", signature="s", body=["intruder"]),
        mstep("FetchInterfaceList"),
        mstep("ProtectSocket", signature="sbo", body=["192.0.2.1", False, "/"], fd="udp4"),
        mstep("DcoAvailable"),
        mstep("Cleanup"),
        mstep("NotificationSubscribe", signature="u", body=[1]),
        mstep("NotificationUnsubscribe", signature="s", body=[""]),
        mstep("NotificationSubscriberList"),
        mstep("GetAll", interface=PROPERTIES, signature="s", body=[INTERFACE]),
        set_step(MANAGER, "log_level", "u", 6),
        mstep("GetMachineId", interface=PEER),
        mstep("Introspect", interface=INTROSPECTABLE, path="/net/openvpn/v3"),
        mstep("Introspect", interface=INTROSPECTABLE, path="/"),
        mstep("Introspect", interface=INTROSPECTABLE, path=device),
        get_step(device, "mtu"),
        mstep("GetAll", path=device, interface=PROPERTIES, signature="s", body=[INTERFACE]),
        mstep("NoSuchMethod"),
        *device_steps(device),
    ]
    res = await arun_client(bus.address, allowed + denied, user=users.unprivileged.name)
    for st, r in zip(allowed, res):
        assert r["ok"], (st["member"], st["path"], r)
    assert res[1]["body"][0]["variant"][1] == await get(root_bus, MANAGER, "version")
    assert "<interface name=\"net.openvpn.v3.netcfg\">" in res[0]["body"][0]
    for st, r in zip(denied, res[len(allowed):]):
        assert_denied(r, by_bus=True, what=(st["member"], st["path"]))
    # Nothing reached the service: the device is as it was, no device was added.
    assert ok(await call(root_bus, "FetchInterfaceList")) == [[device]]
    props = await get_all(root_bus, device)
    assert {k: props[k] for k in DEFAULTS} == DEFAULTS
