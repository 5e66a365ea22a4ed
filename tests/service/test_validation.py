"""Validation at call time, on the real service (issue 3).

Every bad value gets a named error at once and changes nothing:
`net.openvpn.v3.netcfg.error` with a text naming the value for method
arguments, the standard `org.freedesktop.DBus.Error.*` names for property
writes, signatures, unknown members and destroyed objects.  "Changes
nothing" is checked on the device's properties and, for addresses and
networks, on the kernel after an Establish.

Also the introspection the real client depends on (spec 1.7) and the
`version` property.

Calls come from the test's own root connection (root may use every
member: bus policy and service), unless a test needs another process.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import xml.etree.ElementTree as ET

import pytest
import pytest_asyncio
from dbus_fast import Variant
from dbus_fast.aio import MessageBus

from support.client import arun_client
from support.dbuscalls import (
    INTERFACE, INTROSPECTABLE, INVALID_ARGS, MANAGER, NETCFG_ERROR, PEER,
    PROPERTIES, PROPERTY_READ_ONLY, UNKNOWN_INTERFACE, UNKNOWN_METHOD, UNKNOWN_OBJECT,
    UNKNOWN_PROPERTY, assert_error, call, create_device, error, establish, get, get_all,
    introspect, mstep, ok, set_prop,
)

pytestmark = pytest.mark.asyncio

DEVICE_SETTABLE = {"mtu", "layer", "txqueuelen", "reroute_ipv4", "reroute_ipv6", "dns_scope"}


async def expect_errors(bus, path: str, member: str, signature: str, cases, name=NETCFG_ERROR):
    """Each case is (args, fragments): the call fails with `name` and the
    text contains every fragment (the bad value)."""
    for args, fragments in cases:
        reply = await call(bus, member, path=path, signature=signature, body=args)
        try:
            assert_error(reply, name, *fragments)
        except AssertionError as e:
            raise AssertionError(f"{member}{tuple(args)!r}: {e}") from None


def kernel_view(netns, ifname: str) -> tuple[set[str], set[str]]:
    """(addresses "a/p", netcfg routes "dst via gw") on `ifname`, as the kernel has them."""
    addrs = {f"{a['local']}/{a['prefixlen']}" for a in netns.addresses(ifname)
             if a.get("scope") != "link"}
    routes = {f"{r['dst']} via {r.get('gateway', '-')}" for r in netns.netcfg_routes()
              if r.get("dev") == ifname}
    return addrs, routes


@pytest_asyncio.fixture
async def device(service, root_bus):
    return await create_device(root_bus, "valid")


# -- device methods --------------------------------------------------------
async def test_add_ip_address_errors_name_the_value(device, root_bus, netns):
    await expect_errors(root_bus, device, "AddIPAddress", "susb", [
        (["10.8.0.300", 24, "", False], ["10.8.0.300"]),
        (["not-an-ip", 24, "", False], ["not-an-ip"]),
        (["10.8.0.2/24", 24, "", False], ["10.8.0.2/24"]),
        (["", 24, "", False], ["''"]),
        (["2001:db8::2", 64, "", False], ["2001:db8::2", "ipv6=false"]),
        (["10.8.0.2", 24, "", True], ["10.8.0.2", "ipv6=true"]),
        (["10.8.0.2", 33, "", False], ["33", "0-32"]),
        (["10.8.0.2", 4294967295, "", False], ["4294967295"]),
        (["2001:db8::2", 129, "", True], ["129", "0-128"]),
        (["10.8.0.2", 24, "10.8.0.999", False], ["gateway", "10.8.0.999"]),
        (["10.8.0.2", 24, "2001:db8::1", False], ["gateway", "2001:db8::1"]),
        (["2001:db8::2", 64, "10.8.0.1", True], ["gateway", "10.8.0.1"]),
    ])
    # Nothing of the above was stored: only the one good address reaches the kernel.
    ok(await call(root_bus, "AddIPAddress", path=device, signature="susb",
                  body=["10.8.0.2", 24, "10.8.0.1", False]))
    ok(await set_prop(root_bus, device, "layer", "u", 3))
    ifname, fd = await establish(root_bus, device)
    try:
        addrs, routes = kernel_view(netns, ifname)
        assert addrs == {"10.8.0.2/24"}
    finally:
        os.close(fd)


async def test_set_remote_address_errors(device, root_bus):
    await expect_errors(root_bus, device, "SetRemoteAddress", "sb", [
        (["vpn.example.com", False], ["vpn.example.com"]),
        (["192.0.2.256", False], ["192.0.2.256"]),
        (["192.0.2.1", True], ["192.0.2.1", "ipv6=true"]),
        (["2001:db8::1", False], ["2001:db8::1", "ipv6=false"]),
        ([" 192.0.2.1", False], [" 192.0.2.1"]),
    ])
    ok(await call(root_bus, "SetRemoteAddress", path=device, signature="sb", body=["192.0.2.1", False]))


GOOD_V4 = ("10.1.0.0", 16, -1, False, False)
GOOD_V6 = ("2001:db8:1::", 48, 100, True, False)


async def test_add_networks_errors_name_entry_and_value_and_add_nothing(device, root_bus, netns):
    await expect_errors(root_bus, device, "AddNetworks", "a(suibb)", [
        ([[GOOD_V4, ("10.2.0.1", 16, -1, False, False)]], ["networks[1]", "10.2.0.1/16", "10.2.0.0/16"]),
        ([[GOOD_V4, GOOD_V6, ("10.3.0.0", 33, -1, False, False)]], ["networks[2]", "33"]),
        ([[("2001:db8::", 129, -1, True, False)]], ["networks[0]", "129"]),
        ([[GOOD_V6, ("2001:db8::", 64, -1, False, False)]], ["networks[1]", "2001:db8::"]),
        ([[GOOD_V4, ("10.0.0.0", 8, -1, True, False)]], ["networks[1]", "10.0.0.0"]),
        ([[GOOD_V4, ("2001:db8:2::1", 64, -1, True, True)]], ["networks[1]", "2001:db8:2::1/64"]),
        ([[GOOD_V4] * 5 + [("10.4.0.0.0", 16, -1, False, False)]], ["networks[5]", "10.4.0.0.0"]),
        ([[("", 0, -1, False, False)]], ["networks[0]", "''"]),
    ])
    # The old signature a(subb) (clients that think we are <= v25) is checked the same way.
    assert_error(await call(root_bus, "AddNetworks", path=device, signature="a(subb)",
                            body=[[("10.5.0.0", 16, False, False), ("10.5.0.1", 16, False, False)]]),
                 NETCFG_ERROR, "networks[1]", "10.5.0.1/16")

    # A rejected batch adds NONE of its entries: only the later good call's routes appear.
    ok(await call(root_bus, "AddIPAddress", path=device, signature="susb",
                  body=["10.8.0.2", 24, "10.8.0.1", False]))
    ok(await call(root_bus, "AddIPAddress", path=device, signature="susb",
                  body=["2001:db8:8::2", 64, "2001:db8:8::1", True]))
    ok(await call(root_bus, "AddNetworks", path=device, signature="a(suibb)",
                  body=[[("10.99.0.0", 16, -1, False, False), ("2001:db8:99::", 48, -1, True, False)]]))
    ok(await set_prop(root_bus, device, "layer", "u", 3))
    ifname, fd = await establish(root_bus, device)
    try:
        _, routes = kernel_view(netns, ifname)
        assert routes == {"10.99.0.0/16 via 10.8.0.1", "2001:db8:99::/48 via 2001:db8:8::1"}
    finally:
        os.close(fd)


async def test_create_virtual_interface_errors(service, root_bus, bus, users):
    cases = [
        (["a" * 65], ["a" * 40]),
        (["\n\x01\x02\x1f"], ["\\x01\\x02"]),
        (["éü€"], ["éü€"]),
        (["tun-test"], ["tun-test"]),
        (["my dev"], ["my dev"]),
        (["a/b"], ["a/b"]),
        (["\x7f"], ["\\x7f"]),
        ([""], ["''"]),
    ]
    await expect_errors(root_bus, MANAGER, "CreateVirtualInterface", "s", cases)
    longest = await create_device(root_bus, "b" * 64)
    assert longest.endswith("_" + "b" * 64)
    first = await create_device(root_bus, "dup")
    # The same name again from the same process, also after sanitising.
    for name in ("dup", "dup\n", "d\x01u\x02p"):
        assert_error(await call(root_bus, "CreateVirtualInterface", signature="s", body=[name]),
                     NETCFG_ERROR, "dup")
    # Another process may use the same name: its PID makes the path.
    res = await arun_client(bus.address, [mstep("CreateVirtualInterface", signature="s", body=["dup"])],
                            user=users.openvpn.name)
    assert res[0]["ok"], res
    assert res[0]["body"][0] != first and res[0]["body"][0].endswith("_dup")
    # The failed calls left no object behind (the other process's device left with it).
    listed = ok(await call(root_bus, "FetchInterfaceList"))[0]
    assert sorted(listed) == sorted([longest, first])


async def test_dns_value_errors(device, root_bus):
    await expect_errors(root_bus, device, "AddDNS", "as", [
        ([["10.8.0.53", "not-an-ip"]], ["not-an-ip"]),
        ([["300.1.1.1"]], ["300.1.1.1"]),
        ([["10.8.0.53", ""]], ["''"]),
        ([["fe80::1%eth0"]], ["fe80::1%eth0"]),
        ([["10.8.0.53/32"]], ["10.8.0.53/32"]),
    ])
    await expect_errors(root_bus, device, "AddDNSSearch", "as", [
        ([["example.org", "bad..example"]], ["bad..example"]),
        ([["-lead.example"]], ["-lead.example"]),
        ([["exa mple.org"]], ["exa mple.org"]),
        ([["a" * 64 + ".example"]], ["a" * 40]),
        ([[""]], ["''"]),
    ])
    await expect_errors(root_bus, device, "SetDNSSEC", "s", [
        (["maybe"], ["maybe"]), (["unset"], ["unset"]), (["YES"], ["YES"]), ([""], ["''"]),
    ])
    await expect_errors(root_bus, device, "SetDNSTransport", "s", [
        (["udp"], ["udp"]), (["unset"], ["unset"]), (["DoT"], ["DoT"]),
    ])
    props = await get_all(root_bus, device)
    assert props["dns_name_servers"] == [] and props["dns_search_domains"] == []
    assert props["dnssec_mode"] == "unset"
    # The good values of the rejected calls were not kept; good calls work.
    ok(await call(root_bus, "AddDNS", path=device, signature="as", body=[["10.8.0.53"]]))
    ok(await call(root_bus, "AddDNSSearch", path=device, signature="as", body=[["example.org"]]))
    ok(await call(root_bus, "SetDNSSEC", path=device, signature="s", body=["yes"]))
    ok(await call(root_bus, "SetDNSTransport", path=device, signature="s", body=["dot"]))
    props = await get_all(root_bus, device)
    assert props["dns_name_servers"] == ["10.8.0.53"]
    assert props["dns_search_domains"] == ["example.org"]
    assert props["dnssec_mode"] == "yes"


# -- bounds ------------------------------------------------------------------
def _nets(count: int, offset: int = 0) -> list[tuple]:
    """`count` distinct IPv4 /24 networks (10.x.y.0/24 from offset)."""
    return [(f"10.{(i >> 8) & 255}.{i & 255}.0", 24, -1, False, False) for i in range(offset, offset + count)]


async def test_add_networks_per_device_bound(device, root_bus):
    """100,000 networks per device over all calls; a call crossing the bound
    is refused whole, so the bound is still reachable exactly afterwards."""
    ok(await call(root_bus, "AddNetworks", path=device, signature="a(suibb)", body=[_nets(50_000)]))
    reply = await call(root_bus, "AddNetworks", path=device, signature="a(suibb)",
                       body=[_nets(50_001, 50_000)])
    assert_error(reply, NETCFG_ERROR, "50000 stored", "50001 new", "100000")
    ok(await call(root_bus, "AddNetworks", path=device, signature="a(suibb)", body=[_nets(50_000, 50_000)]))
    assert_error(await call(root_bus, "AddNetworks", path=device, signature="a(suibb)", body=[_nets(1)]),
                 NETCFG_ERROR, "100000")


async def test_other_bounds(device, root_bus):
    """Addresses (64), DNS servers (64), search domains (256) per device and
    devices (256) per UID: the call that crosses a bound is refused whole."""
    for i in range(64):
        ok(await call(root_bus, "AddIPAddress", path=device, signature="susb",
                      body=[f"10.8.{i}.2", 24, "", False]))
    assert_error(await call(root_bus, "AddIPAddress", path=device, signature="susb",
                            body=["10.9.0.2", 24, "", False]), NETCFG_ERROR, "64")

    servers = [f"10.53.0.{i}" for i in range(1, 65)]
    ok(await call(root_bus, "AddDNS", path=device, signature="as", body=[servers[:60]]))
    assert_error(await call(root_bus, "AddDNS", path=device, signature="as", body=[["10.53.1.1"] + servers[60:]]),
                 NETCFG_ERROR, "65", "64")
    ok(await call(root_bus, "AddDNS", path=device, signature="as", body=[servers]))  # duplicates merge
    assert await get(root_bus, device, "dns_name_servers") == servers

    domains = [f"d{i}.example" for i in range(256)]
    ok(await call(root_bus, "AddDNSSearch", path=device, signature="as", body=[domains[:200]]))
    assert_error(await call(root_bus, "AddDNSSearch", path=device, signature="as",
                            body=[domains[200:] + ["one.more.example"]]), NETCFG_ERROR, "257", "256")
    ok(await call(root_bus, "AddDNSSearch", path=device, signature="as", body=[domains[200:]]))
    assert await get(root_bus, device, "dns_search_domains") == domains

    for i in range(255):  # the fixture's device is the first
        await create_device(root_bus, f"n{i}")
    assert_error(await call(root_bus, "CreateVirtualInterface", signature="s", body=["toomany"]),
                 NETCFG_ERROR, "toomany", "256")
    assert len(ok(await call(root_bus, "FetchInterfaceList"))[0]) == 256


async def test_huge_add_dns_refused_at_once_while_others_are_served(device, root_bus, bus):
    """AddDNS with 100,000 entries is refused quickly; meanwhile another
    client's calls are answered."""
    other = await MessageBus(bus_address=bus.address).connect()
    try:
        servers = [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in range(100_000)]
        start = time.monotonic()
        big = asyncio.ensure_future(call(root_bus, "AddDNS", path=device, signature="as", body=[servers]))
        served = []
        while not big.done():
            t = time.monotonic()
            assert await get(other, MANAGER, "version")
            served.append(time.monotonic() - t)
            if len(served) >= 5:
                break
        reply = await big
        assert time.monotonic() - start < 5, "AddDNS with 100,000 entries was not refused at once"
        assert_error(reply, NETCFG_ERROR, "100000", "64")
        assert max(served) < 5, served
        assert (await get(root_bus, device, "dns_name_servers")) == []
    finally:
        other.disconnect()


# -- properties ------------------------------------------------------------
async def test_bad_property_values_are_invalid_args(device, root_bus):
    before = await get_all(root_bus, device)
    cases = [
        (device, "mtu", "q", 0, ["0"]),
        (device, "mtu", "q", 67, ["67"]),
        (device, "layer", "u", 5, ["5"]),
        (device, "layer", "u", 0, ["0"]),
        (device, "dns_scope", "s", "bogus", ["bogus"]),
        (device, "dns_scope", "s", "", []),
        (MANAGER, "log_level", "u", 7, ["7"]),
        (MANAGER, "log_level", "u", 4294967295, ["4294967295"]),
        # wrong variant types
        (device, "mtu", "u", 1400, ["'q'", "'u'"]),
        (device, "txqueuelen", "u", 100, ["'q'", "'u'"]),
        (device, "layer", "q", 3, ["'u'", "'q'"]),
        (device, "reroute_ipv4", "s", "true", ["'b'", "'s'"]),
        (device, "dns_scope", "as", ["tunnel"], ["'s'", "'as'"]),
        (MANAGER, "log_level", "i", 3, ["'u'", "'i'"]),
    ]
    for path, prop, sig, value, fragments in cases:
        try:
            assert_error(await set_prop(root_bus, path, prop, sig, value), INVALID_ARGS, *fragments)
        except AssertionError as e:
            raise AssertionError(f"Set {prop}={sig}:{value!r}: {e}") from None
    assert await get_all(root_bus, device) == before
    assert (await get(root_bus, MANAGER, "log_level")) == 6  # the fixture's --log-level


async def test_read_only_and_unknown_properties(device, root_bus):
    before = await get_all(root_bus, device)
    assert set(before) >= DEVICE_SETTABLE
    for prop in sorted(set(before) - DEVICE_SETTABLE):
        value = before[prop]
        sig = {str: "s", int: "u", list: "as", bool: "b"}[type(value)]
        if prop == "acl":
            sig = "au"
        assert_error(await set_prop(root_bus, device, prop, sig, value), PROPERTY_READ_ONLY, prop)
    manager = await get_all(root_bus, MANAGER)
    for prop in ("version", "config_file"):
        assert_error(await set_prop(root_bus, MANAGER, prop, "s", "v99"), PROPERTY_READ_ONLY, prop)
    assert_error(await set_prop(root_bus, MANAGER, "global_dns_servers", "as", ["10.0.0.1"]),
                 PROPERTY_READ_ONLY, "global_dns_servers")
    for path in (device, MANAGER):
        assert_error(await call(root_bus, "Get", path=path, interface=PROPERTIES, signature="ss",
                                body=[INTERFACE, "bogus"]), UNKNOWN_PROPERTY, "bogus")
        assert_error(await set_prop(root_bus, path, "bogus", "u", 1), UNKNOWN_PROPERTY, "bogus")
    assert_error(await call(root_bus, "Get", path=MANAGER, interface=PROPERTIES, signature="ss",
                            body=[INTERFACE, "mtu"]), UNKNOWN_PROPERTY, "mtu")
    assert_error(await call(root_bus, "Get", path=device, interface=PROPERTIES, signature="ss",
                            body=["org.example.Nope", "mtu"]), UNKNOWN_INTERFACE, "org.example.Nope")
    assert await get_all(root_bus, device) == before
    assert await get_all(root_bus, MANAGER) == manager


# -- signatures, unknown members, destroyed objects ---------------------------
async def test_wrong_signature_and_unknown_method(device, root_bus):
    wrong = [
        (device, "AddIPAddress", "sus", ["10.8.0.2", 24, ""]),
        (device, "AddIPAddress", "suss", ["10.8.0.2", 24, "", "false"]),
        (device, "AddNetworks", "a(sub)", [[("10.1.0.0", 16, False)]]),
        (device, "AddNetworks", "as", [["10.1.0.0/16"]]),
        (device, "AddDNS", "s", ["10.8.0.53"]),
        (device, "Establish", "s", ["now"]),
        (device, "SetDNSSEC", "", []),
        (MANAGER, "CreateVirtualInterface", "u", [7]),
        (MANAGER, "FetchInterfaceList", "s", ["x"]),
        (MANAGER, "ProtectSocket", "sbs", ["192.0.2.1", False, "/"]),
        (MANAGER, "Get", "s", ["version"]),  # no interface header: ours, no such method
    ]
    for path, member, sig, body in wrong:
        reply = await call(root_bus, member, path=path, signature=sig, body=body,
                           interface=None if member == "Get" else INTERFACE)
        name, text = error(reply)
        want = UNKNOWN_METHOD if member == "Get" else INVALID_ARGS
        assert name == want, (member, sig, name, text)
        if want == INVALID_ARGS:
            assert f"({sig})" in text, text
    # The standard interfaces are checked the same way.
    standard = [
        (PROPERTIES, "Get", "sss", [INTERFACE, "mtu", "x"]),
        (PROPERTIES, "Get", "s", [INTERFACE]),
        (PROPERTIES, "GetAll", "", []),
        (PROPERTIES, "Set", "ss", [INTERFACE, "mtu"]),
        (INTROSPECTABLE, "Introspect", "s", ["xml"]),
        (PEER, "Ping", "u", [1]),
    ]
    for path in (device, MANAGER):
        for iface, member, sig, body in standard:
            reply = await call(root_bus, member, path=path, interface=iface, signature=sig, body=body)
            assert_error(reply, INVALID_ARGS, f"({sig})")
        assert_error(await call(root_bus, "Frobnicate", path=path), UNKNOWN_METHOD, "Frobnicate")
        for iface in (PEER, PROPERTIES, INTROSPECTABLE):
            assert_error(await call(root_bus, "Frobnicate", path=path, interface=iface), UNKNOWN_METHOD,
                         "Frobnicate")
    assert_error(await call(root_bus, "Ping", path=device, interface="org.example.Nope"),
                 UNKNOWN_INTERFACE, "org.example.Nope")
    assert (await get(root_bus, device, "mtu")) == 1500


async def test_calls_on_destroyed_object(device, root_bus):
    ok(await call(root_bus, "Destroy", path=device))
    attempts = [
        ("AddDNS", INTERFACE, "as", [["10.8.0.53"]]),
        ("AddIPAddress", INTERFACE, "susb", ["10.8.0.2", 24, "", False]),
        ("Establish", INTERFACE, "", []),
        ("Destroy", INTERFACE, "", []),
        ("Get", PROPERTIES, "ss", [INTERFACE, "mtu"]),
        ("GetAll", PROPERTIES, "s", [INTERFACE]),
        ("Set", PROPERTIES, "ssv", [INTERFACE, "mtu", Variant("q", 1400)]),
        ("Introspect", INTROSPECTABLE, "", []),
    ]
    for path in (device, MANAGER + "/1_never_existed"):
        for member, iface, sig, body in attempts:
            reply = await call(root_bus, member, path=path, interface=iface, signature=sig, body=body)
            try:
                assert_error(reply, UNKNOWN_OBJECT, path)
            except AssertionError as e:
                raise AssertionError(f"{member} on {path}: {e}") from None
    assert ok(await call(root_bus, "FetchInterfaceList")) == [[]]


# -- introspection and version (spec 1.7) -------------------------------------
def _xml(text: str) -> ET.Element:
    assert text.startswith("<!DOCTYPE node")
    return ET.fromstring(text.split("\n", 2)[2])


async def test_parent_introspect_lists_netcfg_exactly(service, root_bus, bus, users):
    for text in (
        await introspect(root_bus, "/net/openvpn/v3"),
        # as the real client does it, as the openvpn user
        (await arun_client(bus.address, [mstep("Introspect", path="/net/openvpn/v3",
                                               interface=INTROSPECTABLE)],
                           user=users.openvpn.name))[0]["body"][0],
    ):
        # openvpn3-linux src/dbus/support-functions.cpp matches this regex
        assert re.search(r'<node name="netcfg"/>', text), text
        assert len(text) > 218  # else the client retries 3 times, 100 ms apart
        assert [n.get("name") for n in _xml(text).findall("node")] == ["netcfg"]
    assert [n.get("name") for n in _xml(await introspect(root_bus, "/")).findall("node")] == ["net"]


async def test_manager_introspect_lists_devices(service, root_bus):
    a = await create_device(root_bus, "first")
    b = await create_device(root_bus, "second")
    text = await introspect(root_bus, MANAGER)
    for path in (a, b):
        assert f'<node name="{path.rsplit("/", 1)[1]}"/>' in text
    root = _xml(text)
    assert sorted(n.get("name") for n in root.findall("node")) == sorted(p.rsplit("/", 1)[1] for p in (a, b))
    iface = root.find(f"interface[@name='{INTERFACE}']")
    assert "CreateVirtualInterface" in [m.get("name") for m in iface.findall("method")]
    ok(await call(root_bus, "Destroy", path=a))
    assert [n.get("name") for n in _xml(await introspect(root_bus, MANAGER)).findall("node")] == [
        b.rsplit("/", 1)[1]]


async def test_device_introspect_declares_signals(device, root_bus):
    iface = _xml(await introspect(root_bus, device)).find(f"interface[@name='{INTERFACE}']")
    signals = {s.get("name"): [(a.get("type"), a.get("name")) for a in s.findall("arg")]
               for s in iface.findall("signal")}
    assert signals["Log"] == [("u", "group"), ("u", "level"), ("s", "message")]
    assert signals["NetworkChange"] == [("u", "type"), ("s", "device"), ("a{ss}", "details")]
    props = {p.get("name"): (p.get("type"), p.get("access")) for p in iface.findall("property")}
    assert props["mtu"] == ("q", "readwrite") and props["dns_name_servers"] == ("as", "read")


async def test_version_is_not_an_old_v_number(service, root_bus, bus, users):
    version = await get(root_bus, MANAGER, "version")
    res = await arun_client(bus.address, [mstep("Get", interface=PROPERTIES, signature="ss",
                                                 body=[INTERFACE, "version"])],
                            user=users.unprivileged.name)
    assert res[0]["body"] == [{"variant": ["s", version]}]
    # The v27 client parses v(\d+) and falls back to a(subb) at <= 25 (spec 1.7).
    m = re.match(r"v(\d+)", version)
    assert m is None or int(m.group(1)) > 25, version
    assert version
