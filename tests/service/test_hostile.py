"""Hostile input leaves the service alive, leak-free and the kernel clean
(issue 3).

Wrong types, huge strings and arrays, control characters and junk in
names, invalid UTF-8 and invalid signatures (which dbus-daemon itself
refuses, disconnecting the sender), file descriptors attached where none
are expected.  Each test ends with the service answering; the fixture then
checks it exits 0 on SIGTERM, logged no Traceback and left nothing in its
namespace.

Calls come from the test's own root connection: root passes the bus policy
and the service's owner checks, so the input reaches the deepest code.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import struct
import time

import pytest
import pytest_asyncio
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from support import NETCFG_BUS_NAME
from support.client import arun_client
from support.dbuscalls import (
    INTERFACE, INVALID_ARGS, MANAGER, NETCFG_ERROR, PROPERTIES, UNKNOWN_INTERFACE, UNKNOWN_METHOD,
    UNKNOWN_OBJECT, UNKNOWN_PROPERTY,
    assert_error, call, create_device, error, establish, get, get_all, get_step, mstep, ok, set_prop,
)
from support.netns import ROUTER_V4, UPLINK_IF

pytestmark = pytest.mark.asyncio

MB = 1 << 20
# Generous bound for "refused at once": the call is answered without the
# service working through the whole input first.
AT_ONCE = 5.0


@pytest_asyncio.fixture
async def device(service, root_bus):
    return await create_device(root_bus, "target")


async def timed(coro) -> tuple[Message, float]:
    """The reply and the seconds it took, from after the message was
    marshalled (dbus-fast does that before the call's first await; for
    24 MB that alone takes a second or two in the test process)."""
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(0)
    start = time.monotonic()
    reply = await task
    return reply, time.monotonic() - start


async def wait_fds_at_most(service, limit: int, timeout: float = 10.0) -> int:
    """The service's open fd count once it is <= limit (fds are closed
    right after the reply is queued, so poll briefly)."""
    deadline = time.monotonic() + timeout
    while True:
        n = service.open_fds()
        if n <= limit or time.monotonic() > deadline:
            return n
        await asyncio.sleep(0.05)


def assert_short_printable(text: str, limit: int = 1000) -> None:
    assert len(text) < limit, f"error text of {len(text)} characters echoes the input"
    assert all(c.isprintable() for c in text), f"raw control characters in {text!r}"


# -- wrong types ----------------------------------------------------------------
WRONG_BODIES = [
    ("v", [Variant("s", "10.8.0.2")]),
    ("ay", [b"\x00\xff" * 8]),
    ("a{sv}", [{"ip_address": Variant("s", "10.8.0.2")}]),
    ("(susb)", [("10.8.0.2", 24, "", False)]),
    ("x", [-1]),
    ("d", [1.5]),
    ("h", [0]),
    ("aaaaas", [[[[[["deep"]]]]]]),
]


async def test_wrong_types_everywhere(device, root_bus):
    device_members = ["AddIPAddress", "SetRemoteAddress", "AddNetworks", "AddDNS", "AddDNSSearch",
                      "SetDNSSEC", "SetDNSTransport", "EnableDCO", "Establish", "Disable", "Destroy"]
    manager_members = ["CreateVirtualInterface", "FetchInterfaceList", "ProtectSocket", "DcoAvailable",
                       "Cleanup", "NotificationSubscribe", "NotificationUnsubscribe",
                       "NotificationSubscriberList"]
    for path, members in ((device, device_members), (MANAGER, manager_members)):
        for member in members:
            for sig, body in WRONG_BODIES:
                fds = []
                if sig == "h":
                    fds = [os.open(os.devnull, os.O_RDONLY)]
                try:
                    reply = await call(root_bus, member, path=path, signature=sig, body=body, fds=fds)
                finally:
                    for fd in fds:
                        os.close(fd)
                name, text = error(reply)
                assert name == INVALID_ARGS, (member, sig, name, text)
    # Properties interface with the wrong shapes.
    for member, sig, body in [
        ("Get", "s", [INTERFACE]),
        ("Get", "su", [INTERFACE, 1]),
        ("GetAll", "ss", [INTERFACE, "mtu"]),
        ("Set", "ss", [INTERFACE, "mtu"]),
        ("Set", "ssq", [INTERFACE, "mtu", 1400]),
        ("Set", "ssv", [INTERFACE, "mtu", Variant("v", Variant("q", 1400))]),
        ("Set", "ssv", [INTERFACE, "mtu", Variant("(q)", [1400])]),
        ("Set", "ssv", [INTERFACE, "layer", Variant("a{sv}", {"layer": Variant("u", 3)})]),
    ]:
        reply = await call(root_bus, member, path=device, interface=PROPERTIES, signature=sig, body=body)
        name, text = error(reply)
        assert name == INVALID_ARGS, (member, sig, name, text)
    props = await get_all(root_bus, device)
    assert props["mtu"] == 1500 and props["layer"] == 0


# -- huge strings -----------------------------------------------------------------
async def test_huge_strings(device, root_bus):
    name_1mb = "n" * MB
    ip_10mb = "1" * (10 * MB)
    cases = [
        (MANAGER, "CreateVirtualInterface", "s", [name_1mb], NETCFG_ERROR),
        (MANAGER, "CreateVirtualInterface", "s", ["\x01" * MB], NETCFG_ERROR),
        (MANAGER, "CreateVirtualInterface", "s", ["é" * MB], NETCFG_ERROR),
        (device, "AddIPAddress", "susb", [ip_10mb, 24, "", False], NETCFG_ERROR),
        (device, "AddIPAddress", "susb", ["10.8.0.2", 24, ip_10mb, False], NETCFG_ERROR),
        (device, "SetRemoteAddress", "sb", [ip_10mb, False], NETCFG_ERROR),
        (device, "AddNetworks", "a(suibb)", [[(ip_10mb, 16, -1, False, False)]], NETCFG_ERROR),
        (device, "AddDNS", "as", [[ip_10mb]], NETCFG_ERROR),
        (device, "AddDNSSearch", "as", [["a." * (5 * MB)]], NETCFG_ERROR),
        (device, "SetDNSSEC", "s", [ip_10mb], NETCFG_ERROR),
        (device, "SetDNSTransport", "s", [ip_10mb], NETCFG_ERROR),
        (device, "EnableDCO", "s", [ip_10mb], NETCFG_ERROR),
        (MANAGER, "ProtectSocket", "sbo", [ip_10mb, False, "/"], NETCFG_ERROR),
        (MANAGER, "NotificationUnsubscribe", "s", [ip_10mb], NETCFG_ERROR),
        (MANAGER, "Frobnicate", "s", [ip_10mb], UNKNOWN_METHOD),
        (device + "_" + "x" * MB, "Destroy", "", [], UNKNOWN_OBJECT),
    ]
    for path, member, sig, body, want in cases:
        reply, took = await timed(call(root_bus, member, path=path, signature=sig, body=body))
        name, text = error(reply)
        assert name == want, (member, name, text[:200])
        assert_short_printable(text)
        assert took < AT_ONCE, f"{member} took {took:.1f} s"
    for prop, sig, value in (("dns_scope", "s", ip_10mb), ("mtu", "s", ip_10mb)):
        reply = await set_prop(root_bus, device, prop, sig, value)
        name, text = error(reply)
        assert name == INVALID_ARGS
        assert_short_printable(text)
    # Property and interface names are plain strings in the body, too.
    for member, sig, body, want in [
        ("Get", "ss", [INTERFACE, ip_10mb], UNKNOWN_PROPERTY),
        ("Get", "ss", [ip_10mb, "mtu"], UNKNOWN_INTERFACE),
        ("GetAll", "s", [ip_10mb], UNKNOWN_INTERFACE),
        ("Set", "ssv", [INTERFACE, ip_10mb, Variant("q", 1400)], UNKNOWN_PROPERTY),
        ("Get", "ss", [INTERFACE, "\x1b[2J\x07" * 10], UNKNOWN_PROPERTY),
    ]:
        for path in (device, MANAGER):
            reply, took = await timed(call(root_bus, member, path=path, interface=PROPERTIES,
                                           signature=sig, body=body))
            name, text = error(reply)
            assert name == want, (member, name, text[:200])
            assert_short_printable(text)
            assert took < AT_ONCE
    props = await get_all(root_bus, device)
    assert props["dns_scope"] == "global" and props["dns_name_servers"] == []
    assert ok(await call(root_bus, "FetchInterfaceList")) == [[device]]


# -- huge arrays ----------------------------------------------------------------------
async def test_huge_arrays(device, root_bus, netns):
    million = 1_000_000
    cases = [
        # 1,000,000 valid networks: over the per-device bound (24 MB on the wire)
        ("AddNetworks", "a(suibb)", [[("::", 0, -1, True, False)] * million], ["1000000", "100000"]),
        # 1,000,000 entries, the first already bad
        ("AddNetworks", "a(suibb)", [[("", 0, 0, False, False)] * million], []),
        # the old signature, same bound
        ("AddNetworks", "a(subb)", [[("::", 0, True, False)] * million], ["1000000"]),
        ("AddDNS", "as", [[""] * million], ["1000000"]),
        ("AddDNSSearch", "as", [["example.org"] * million], ["1000000"]),
    ]
    for member, sig, body, fragments in cases:
        reply, took = await timed(call(root_bus, member, path=device, signature=sig, body=body, timeout=120))
        text = assert_error(reply, NETCFG_ERROR, *fragments)
        assert_short_printable(text)
        assert took < AT_ONCE, f"{member} {sig} with {million} entries took {took:.1f} s"
    # Structs the method does not take: a signature error, before any of it is used.
    reply, took = await timed(call(root_bus, "AddNetworks", path=device, signature="a(s)",
                                   body=[[("",)] * million], timeout=120))
    assert_error(reply, INVALID_ARGS)
    assert took < AT_ONCE
    # Nothing of it was stored: an Establish installs only this one network.
    ok(await call(root_bus, "AddNetworks", path=device, signature="a(suibb)",
                  body=[[("10.77.0.0", 16, -1, False, False)]]))
    ok(await set_prop(root_bus, device, "layer", "u", 3))
    ifname, fd = await establish(root_bus, device)
    try:
        assert {r["dst"] for r in netns.netcfg_routes()} == {"10.77.0.0/16"}
        assert await get(root_bus, device, "dns_name_servers") == []
    finally:
        os.close(fd)


# -- control characters and junk --------------------------------------------------------
JUNK_NAMES = [
    "".join(chr(c) for c in range(1, 32)) + "\x7f",
    "ok\x1b[31mred\x1b[0m",
    "bell\x07and\x08back",
    "tab\tnew\nline\rcr",
    "\u202eevil\u202c",
    "\ufeffbom",
    "pile\U0001f4a9of",
    "".join(chr(c) for c in range(0x80, 0x100)),
    bytes(range(1, 256)).decode("latin-1"),
    "../../etc/passwd",
    "name with spaces",
    "\n\n\n",
    "x" * 63 + "\x01" * 100 + "y",
]


async def test_control_characters_and_junk_in_names(service, root_bus):
    created = []
    for raw in JUNK_NAMES:
        reply = await call(root_bus, "CreateVirtualInterface", signature="s", body=[raw])
        if reply.message_type == MessageType.METHOD_RETURN:
            path = reply.body[0]
            element = path.rsplit("/", 1)[1]
            assert re.fullmatch(r"\d+_[A-Za-z0-9_]{1,64}", element), (raw, path)
            # what is left is the name minus control characters and non-ASCII
            kept = "".join(c for c in raw.rstrip("\n") if 0x20 <= ord(c) < 0x80)
            assert element.split("_", 1)[1] == kept
            assert await get(root_bus, path, "device_name") == kept
            created.append(path)
        else:
            _, text = error(reply)
            assert_error(reply, NETCFG_ERROR)
            assert_short_printable(text)
    assert created, "none of the junk names sanitised to a valid one"
    # Junk where an IP or a DNS value is expected: errors, escaped.
    device = created[0]
    for member, sig, body in [
        ("AddIPAddress", "susb", ["10.8.0.2\n", 24, "", False]),
        ("AddIPAddress", "susb", ["\x1b[2J10.8.0.2", 24, "", False]),
        ("SetRemoteAddress", "sb", ["192.0.2.1\r\n", False]),
        ("AddDNS", "as", [["10.8.0.53\x00".replace("\x00", "\x01")]]),
        ("AddDNSSearch", "as", [["exa\x07mple.org"]]),
        ("SetDNSSEC", "s", ["yes\n"]),
    ]:
        text = assert_error(await call(root_bus, member, path=device, signature=sig, body=body), NETCFG_ERROR)
        assert_short_printable(text)
    assert sorted(ok(await call(root_bus, "FetchInterfaceList"))[0]) == sorted(created)
    # The log escapes what it quotes: no raw control characters besides newlines.
    log = service.log_text()
    bad = {c for c in log if (ord(c) < 0x20 and c != "\n") or c in "\x7f\u202e"}
    assert not bad, f"raw control characters in the service log: {bad!r}"


# -- messages dbus-daemon refuses -----------------------------------------------------
PLACEHOLDER = "PLACEHOLDER-STRING-0123456789"


def _with_signature(data: bytes, old: str, new: str) -> bytes:
    """Swap the SIGNATURE header field of a marshalled message (dbus-fast
    writes it last), fixing the header's length and padding."""
    def field(sig: str) -> bytes:
        return b"\x08\x01g\x00" + bytes([len(sig)]) + sig.encode() + b"\x00"

    fields_len = struct.unpack_from("<I", data, 12)[0]
    fields = data[16:16 + fields_len]
    assert fields.endswith(field(old)), fields
    body = data[16 + fields_len + (-(16 + fields_len) % 8):]
    fields = fields[:-len(field(old))] + field(new)
    header = data[:12] + struct.pack("<I", len(fields)) + fields
    return header + b"\x00" * (-len(header) % 8) + body


def corrupted(serial: int, how: str) -> bytes:
    """A CreateVirtualInterface call made invalid after marshalling (the
    library only writes valid messages)."""
    def marshal(sig: str, body: list) -> bytes:
        return bytes(Message(destination=NETCFG_BUS_NAME, path=MANAGER, interface=INTERFACE,
                             member="CreateVirtualInterface", signature=sig, body=body,
                             serial=serial)._marshall(False))

    # Empty structs are not a D-Bus type: "()" and an array of them, "a()".
    if how == "empty-struct":
        return _with_signature(marshal("ay", [b""]), "ay", "()")
    if how == "array-of-empty-structs":
        return _with_signature(marshal("a(y)", [[]]), "a(y)", "a()")
    data = marshal("s", [PLACEHOLDER])
    if how == "intact":
        return data
    plain = PLACEHOLDER.encode()
    bad = {
        "invalid-utf8": b"dev\xff\xfe\xc3(",
        "overlong-nul": b"dev\xc0\x80",  # a NUL hidden in an overlong UTF-8 sequence
        "surrogate": b"dev\xed\xa0\x80",
        "embedded-nul": b"dev\x00",
    }[how]
    bad += b"x" * (len(plain) - len(bad))
    assert data.count(plain) == 1
    return data.replace(plain, bad)


async def test_corrupted_messages_are_framed_right():
    """The crafted messages are well framed (header and body lengths add
    up), so the daemon refuses them for their content, not their framing."""
    swapped = _with_signature(Message(destination=NETCFG_BUS_NAME, path=MANAGER, interface=INTERFACE,
                                      member="M", signature="ay", body=[b""], serial=7)._marshall(False),
                              "ay", "as")
    real = bytes(Message(destination=NETCFG_BUS_NAME, path=MANAGER, interface=INTERFACE,
                         member="M", signature="as", body=[[]], serial=7)._marshall(False))
    assert swapped == real
    for how in ("empty-struct", "array-of-empty-structs", "invalid-utf8"):
        data = corrupted(1, how)
        fields_len = struct.unpack_from("<I", data, 12)[0]
        body_start = 16 + fields_len + (-(16 + fields_len) % 8)
        assert struct.unpack_from("<I", data, 4)[0] == len(data) - body_start, how


def _send_raw(conn: MessageBus, data: bytes) -> None:
    # The library writes only valid messages: put ours on its socket directly.
    sock: socket.socket = conn._sock
    sock.setblocking(True)
    try:
        sock.sendall(data)
    finally:
        sock.setblocking(False)


async def test_invalid_messages_disconnect_the_sender_only(service, root_bus, bus):
    # Control: the same path with the message left intact gets a reply.
    conn = await MessageBus(bus_address=bus.address).connect()
    replied: asyncio.Future = asyncio.get_running_loop().create_future()
    conn.add_message_handler(
        lambda m: replied.set_result(m) if m.reply_serial == 1000 and not replied.done() else None)
    _send_raw(conn, corrupted(1000, "intact"))
    assert_error(await asyncio.wait_for(replied, 10), NETCFG_ERROR, PLACEHOLDER)
    conn.disconnect()

    for how in ("invalid-utf8", "overlong-nul", "surrogate", "embedded-nul", "empty-struct",
                "array-of-empty-structs"):
        conn = await MessageBus(bus_address=bus.address).connect()
        _send_raw(conn, corrupted(1000, how))
        try:
            await asyncio.wait_for(conn.wait_for_disconnect(), 10)
        except asyncio.TimeoutError:
            raise AssertionError(f"{how}: dbus-daemon kept the connection") from None
        except Exception:
            pass  # disconnected with an error (EOF): what we want
        assert not conn.connected, how
        await service.assert_healthy(root_bus)
    # None of them reached the service.
    assert ok(await call(root_bus, "FetchInterfaceList")) == [[]]
    assert service.log_text().count("Error creating virtual interface") == 1
    # A valid name with non-ASCII characters, properly encoded, is fine.
    path = await create_device(root_bus, "caf\u00e9")
    assert path.endswith("_caf")


# -- file descriptors ----------------------------------------------------------------
async def test_unexpected_fds_are_closed(device, service, root_bus):
    """100 calls each, with an fd attached, to members that take none, to
    unknown methods and objects, with the wrong signature, and unicast
    signals with fds: the service's fd count does not grow."""
    targets = [
        dict(member="FetchInterfaceList"),
        dict(member="NoSuchMethod"),
        dict(member="Ping", interface="org.freedesktop.DBus.Peer"),
        dict(member="Introspect", interface="org.freedesktop.DBus.Introspectable"),
        dict(member="Get", interface=PROPERTIES, signature="ss", body=[INTERFACE, "version"]),
        dict(member="AddDNS", path=device, signature="as", body=[["10.8.0.53"]]),
        dict(member="AddDNS", path=device, signature="s", body=["10.8.0.53"]),
        dict(member="Destroy", path=MANAGER + "/1_nothing"),
        dict(member="ProtectSocket", signature="sbs", body=["192.0.2.1", False, "/"]),
        dict(member="CreateVirtualInterface", signature="s", body=["bad name"]),
    ]
    # warm up: first calls allocate what the service keeps (credential cache, ...)
    for t in targets:
        await call(root_bus, **t)
    before = service.open_fds()
    a, b = socket.socketpair()
    try:
        for t in targets:
            replies = await asyncio.gather(*(call(root_bus, **t, fds=[a.fileno()]) for _ in range(100)))
            for r in replies:
                assert r.message_type in (MessageType.METHOD_RETURN, MessageType.ERROR)
        # Signals are not calls, but anyone may send one to the service, fds included.
        for _ in range(100):
            await root_bus.send(Message(message_type=MessageType.SIGNAL, destination=service.unique_name,
                                        path="/org/example", interface="org.example.Junk", member="Stuff",
                                        unix_fds=[a.fileno()]))
        await service.ping(root_bus)
        after = await wait_fds_at_most(service, before)
        assert after <= before, f"service fds grew from {before} to {after}"
    finally:
        a.close()
        b.close()
    assert await get(root_bus, device, "dns_name_servers") == ["10.8.0.53"]


@pytest.mark.netns(uplink=True)
async def test_protect_socket_with_and_without_fd(service, root_bus, netns):
    remote = "198.51.100.7"
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    extra = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for fds in ([], [udp.fileno()], [udp.fileno(), extra.fileno()]):
            body = ok(await call(root_bus, "ProtectSocket", signature="sbo", body=[remote, False, "/"], fds=fds))
            assert body == [True], fds
            routes = [r for r in netns.netcfg_routes() if r["dst"] == remote]
            assert [(r.get("gateway"), r.get("dev")) for r in routes] == [(ROUTER_V4, UPLINK_IF)]
        before = service.open_fds()
        for _ in range(100):
            ok(await call(root_bus, "ProtectSocket", signature="sbo", body=[remote, False, "/"],
                          fds=[udp.fileno(), extra.fileno()]))
        after = await wait_fds_at_most(service, before)
        assert after <= before, f"service fds grew from {before} to {after}"
        # Our sockets are still ours: the service closed only its copies.
        assert udp.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_DGRAM
        # Bad remotes are named errors, with or without an fd.
        for fds in ([], [udp.fileno()]):
            assert_error(await call(root_bus, "ProtectSocket", signature="sbo", body=["not-an-ip", False, "/"],
                                    fds=fds), NETCFG_ERROR, "not-an-ip")
            assert_error(await call(root_bus, "ProtectSocket", signature="sbo", body=[remote, True, "/"],
                                    fds=fds), NETCFG_ERROR, remote)
        assert await wait_fds_at_most(service, before) <= before
    finally:
        udp.close()
        extra.close()
    # The host route goes with its caller (fixture: no proto-111 route left).
    await service.assert_healthy(root_bus)


async def test_what_an_unprivileged_user_can_send(service, root_bus, bus, users):
    """The bus lets netcfg-test reach only Introspect, Get and Ping: those,
    with fds attached and with junk names, change nothing and leak nothing."""
    before = service.open_fds()
    junk = [
        mstep("Ping", interface="org.freedesktop.DBus.Peer", fd="devnull"),
        mstep("Introspect", interface="org.freedesktop.DBus.Introspectable", fd="devnull"),
        get_step(MANAGER, "version", fd="devnull"),
        get_step(MANAGER, "p" * MB),
        get_step(MANAGER, "\x1b[31mred\x07"),
        mstep("Get", interface=PROPERTIES, signature="ss", body=["\u202e" * 1000, "version"]),
        mstep("Get", interface=PROPERTIES, signature="sss", body=[INTERFACE, "version", "extra"]),
    ]
    res = await arun_client(bus.address, junk[:3] * 100 + junk[3:], user=users.unprivileged.name)
    assert all(r["ok"] for r in res[:300]), [r for r in res[:300] if not r["ok"]][:3]
    names = [r.get("error") for r in res[300:]]
    assert names == [UNKNOWN_PROPERTY, UNKNOWN_PROPERTY, UNKNOWN_INTERFACE, INVALID_ARGS], res[300:]
    for r in res[300:]:
        assert_short_printable(r["text"])
    after = await wait_fds_at_most(service, before)
    assert after <= before, f"service fds grew from {before} to {after}"
    await service.assert_healthy(root_bus)


async def test_forged_name_owner_changed_is_ignored(device, service, root_bus, bus):
    """Anyone may send the service a signal; one dressed up as the bus
    driver's NameOwnerChanged for the device's creator must not tear the
    device down (the daemon sets the real sender)."""
    forger = await MessageBus(bus_address=bus.address).connect()
    try:
        for destination in (service.unique_name, None):
            await forger.send(Message(
                message_type=MessageType.SIGNAL, destination=destination, path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus", member="NameOwnerChanged", signature="sss",
                body=[root_bus.unique_name, root_bus.unique_name, ""]))
        await service.ping(forger)
    finally:
        forger.disconnect()
    await service.ping(root_bus)
    assert ok(await call(root_bus, "FetchInterfaceList")) == [[device]]
    assert await get(root_bus, device, "device_name") == "target"
