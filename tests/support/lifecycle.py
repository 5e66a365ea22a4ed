"""Helpers for the device life-cycle tests (tests/service/test_establish.py,
test_cleanup.py, test_service_lifetime.py, test_log_and_properties.py).

* ``Netcfg``: the test's own dbus-fast connection (usually ``root_bus``)
  talking to the service; ``CallFailed`` carries the D-Bus error name.
* Step builders for the client runner (``support.client``): ``mgr_step``,
  ``dev_step``, ``set_step``, ``configure_steps``.
* One standard device configuration (``ADDR4``, ``ADDR6``, ``NETWORKS``) and
  what the kernel must then hold (``expected_routes``).
* Kernel views of the test's namespace: ``tun_links``, ``route_set``,
  ``global_addresses``, ``rx_packets``.
* Tun fds: ``tun_name`` (TUNGETIFF), ``steal_fd`` (pidfd_getfd: a copy of a
  client process's fd, to write into its tun), ``ipv4_udp_packet``.
* ``wait_until``: poll a condition with a timeout (never a fixed sleep).
* ``log_problems``: WARNING/ERROR lines of the service's log.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import socket
import struct
import time
from typing import Any, Awaitable, Callable

from dbus_fast import Message, MessageType, Variant

from . import NETCFG_BUS_NAME, NETCFG_MANAGER_PATH
from .netns import Netns

IFACE = NETCFG_BUS_NAME
PROPS = "org.freedesktop.DBus.Properties"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
NETCFG_ERROR = "net.openvpn.v3.netcfg.error"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"

# The standard configuration: one address per family, routes with and
# without a metric (-1 = kernel default) in both families.
ADDR4 = ["10.8.0.2", 24, "10.8.0.1", False]
ADDR6 = ["fd00:8::2", 64, "fd00:8::1", True]
NETWORKS = [
    ["192.168.100.0", 24, -1, False, False],
    ["172.16.0.0", 12, 50, False, False],
    ["fd00:100::", 48, -1, True, False],
    ["fd00:200::", 48, 70, True, False],
]
REMOTE = ["198.51.100.7", False]
V6_DEFAULT_METRIC = 1024  # what the kernel gives an IPv6 route without one


# -- the test's own connection -----------------------------------------
class CallFailed(AssertionError):
    def __init__(self, member: str, name: str, text: str) -> None:
        super().__init__(f"{member}: {name}: {text}")
        self.name, self.text = name, text


class Netcfg:
    """Calls to the service over one dbus-fast connection of the test."""

    def __init__(self, bus) -> None:
        self.bus = bus

    async def call(self, path: str, member: str, signature: str = "", body=(),
                   interface: str = IFACE, timeout: float = 30) -> Message:
        msg = Message(destination=NETCFG_BUS_NAME, path=path, interface=interface, member=member,
                      signature=signature, body=list(body))
        reply = await asyncio.wait_for(self.bus.call(msg), timeout)
        if reply.message_type is MessageType.ERROR:
            for fd in reply.unix_fds or []:
                os.close(fd)
            raise CallFailed(member, reply.error_name, reply.body[0] if reply.body else "")
        return reply

    async def error(self, path: str, member: str, signature: str = "", body=(), **kw) -> CallFailed:
        """The error the call must fail with."""
        try:
            reply = await self.call(path, member, signature, body, **kw)
        except CallFailed as e:
            return e
        for fd in reply.unix_fds or []:
            os.close(fd)
        raise AssertionError(f"{member} on {path} succeeded, an error was expected")

    async def create(self, name: str) -> str:
        return (await self.call(NETCFG_MANAGER_PATH, "CreateVirtualInterface", "s", [name])).body[0]

    async def set(self, path: str, prop: str, signature: str, value) -> None:
        await self.call(path, "Set", "ssv", [IFACE, prop, Variant(signature, value)], PROPS)

    async def get(self, path: str, prop: str):
        return (await self.call(path, "Get", "ss", [IFACE, prop], PROPS)).body[0].value

    async def configure(self, path: str, *, mtu=1420, txqueuelen=0, addresses=(ADDR4, ADDR6),
                        networks=NETWORKS, reroute_ipv4=False, reroute_ipv6=False) -> None:
        await self.set(path, "layer", "u", 3)
        await self.set(path, "mtu", "q", mtu)
        if txqueuelen:
            await self.set(path, "txqueuelen", "q", txqueuelen)
        for a in addresses:
            await self.call(path, "AddIPAddress", "susb", a)
        if networks:
            await self.call(path, "AddNetworks", "a(suibb)", [list(networks)])
        await self.call(path, "SetRemoteAddress", "sb", REMOTE)
        if reroute_ipv4:
            await self.set(path, "reroute_ipv4", "b", True)
        if reroute_ipv6:
            await self.set(path, "reroute_ipv6", "b", True)

    async def establish(self, path: str) -> int:
        """Establish; returns the tun fd (the caller closes it)."""
        reply = await self.call(path, "Establish")
        fds = list(reply.unix_fds or [])
        assert reply.signature == "" and reply.body == [], (reply.signature, reply.body)
        assert len(fds) == 1, f"Establish replied with {len(fds)} fds"
        return fds[0]

    async def destroy(self, path: str) -> None:
        await self.call(path, "Destroy")

    async def introspect(self, path: str = NETCFG_MANAGER_PATH) -> str:
        return (await self.call(path, "Introspect", interface=INTROSPECTABLE)).body[0]

    async def device_paths(self) -> list[str]:
        return (await self.call(NETCFG_MANAGER_PATH, "FetchInterfaceList")).body[0]


def child_nodes(xml: str) -> list[str]:
    import re

    return re.findall(r'<node name="([^"]+)"/>', xml)


# -- client runner steps -------------------------------------------------
def mgr_step(member: str, signature: str = "", body=(), **kw) -> dict:
    return {"destination": NETCFG_BUS_NAME, "path": NETCFG_MANAGER_PATH, "interface": IFACE,
            "member": member, "signature": signature, "body": list(body), **kw}


def dev_step(path, member: str, signature: str = "", body=(), interface: str = IFACE, **kw) -> dict:
    """``path``: an object path, or a ref like ``{"ref": [0, 0]}``."""
    return {"destination": NETCFG_BUS_NAME, "path": path, "interface": interface,
            "member": member, "signature": signature, "body": list(body), **kw}


def set_step(path, prop: str, signature: str, value) -> dict:
    return dev_step(path, "Set", "ssv", [IFACE, prop, {"variant": [signature, value]}], PROPS)


def get_step(path, prop: str) -> dict:
    return dev_step(path, "Get", "ss", [IFACE, prop], PROPS)


def configure_steps(path, *, mtu=1420, txqueuelen=0, networks=NETWORKS) -> list[dict]:
    """The usual client sequence up to (not including) Establish."""
    steps = [set_step(path, "layer", "u", 3), set_step(path, "mtu", "q", mtu)]
    if txqueuelen:
        steps.append(set_step(path, "txqueuelen", "q", txqueuelen))
    steps += [dev_step(path, "AddIPAddress", "susb", ADDR4),
              dev_step(path, "AddIPAddress", "susb", ADDR6)]
    if networks:
        steps.append(dev_step(path, "AddNetworks", "a(suibb)", [list(networks)]))
    steps.append(dev_step(path, "SetRemoteAddress", "sb", REMOTE))
    return steps


def assert_ok(results: list[dict]) -> None:
    bad = [(i, r) for i, r in enumerate(results) if not r.get("ok")]
    assert not bad, f"client steps failed: {bad}"


# -- kernel views ----------------------------------------------------------
def tun_links(ns: Netns) -> list[dict[str, Any]]:
    return [l for l in ns.links() if l.get("linkinfo", {}).get("info_kind") == "tun"]


def route_set(ns: Netns) -> set[tuple]:
    """Our routes (protocol 111) as (dst, gateway, dev, metric); IPv4 routes
    without a metric have metric 0."""
    out = set()
    for r in ns.netcfg_routes():
        out.add((r["dst"], r.get("gateway"), r.get("dev"), r.get("metric", 0)))
    return out


def expected_routes(dev: str, networks=NETWORKS) -> set[tuple]:
    """What the standard configuration puts on tun ``dev``."""
    out = set()
    for addr, prefix, metric, ipv6, exclude in networks:
        assert not exclude
        gw = ADDR6[2] if ipv6 else ADDR4[2]
        m = metric if metric > 0 else (V6_DEFAULT_METRIC if ipv6 else 0)
        out.add((f"{addr}/{prefix}", gw, dev, m))
    return out


def global_addresses(ns: Netns, ifname: str | None = None) -> set[tuple]:
    """(ifname, address, prefix) of every non-link-local address but lo's."""
    return {(a["ifname"], a["local"], a["prefixlen"]) for a in ns.addresses(ifname)
            if a.get("scope") != "link" and a["ifname"] != "lo"}


def rx_packets(ns: Netns, ifname: str) -> int:
    link = ns.ip_json("-s", "link", "show", "dev", ifname)[0]
    return link["stats64"]["rx"]["packets"]


# -- tun fds -----------------------------------------------------------
TUNGETIFF = 0x800454D2


def tun_name(fd: int) -> str:
    """The interface name of a tun fd (TUNGETIFF)."""
    res = fcntl.ioctl(fd, TUNGETIFF, struct.pack("16sH", b"", 0))
    return res[:16].rstrip(b"\0").decode()


def fds_to(pid: int, target: str) -> list[int]:
    """fd numbers of process ``pid`` whose link is ``target``."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                out.append(int(fd))
        except OSError:
            pass
    return sorted(out)


_SYS_PIDFD_GETFD = 438  # the same number on every architecture


def steal_fd(pid: int, fd: int) -> int:
    """A copy (in this process) of fd ``fd`` of process ``pid`` (root only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        new = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
        if new < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"pidfd_getfd({pid}, {fd}): {os.strerror(err)}")
        return new
    finally:
        os.close(pidfd)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_udp_packet(src: str, dst: str, payload: bytes = b"netcfg test") -> bytes:
    """A complete IPv4/UDP packet, as a layer-3 tun (IFF_NO_PI) takes it."""
    udp = struct.pack("!HHHH", 40000, 40001, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, socket.IPPROTO_UDP, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return hdr + udp


# -- polling -----------------------------------------------------------
async def wait_until(pred: Callable[[], Any | Awaitable[Any]], timeout: float = 10.0,
                     what: str = "condition", interval: float = 0.05):
    """Poll ``pred`` (sync or async) until it returns a true value; return
    that value.  Fails with ``what`` and the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(interval)


# -- the service's log -------------------------------------------------
def log_problems(svc, allow: tuple[str, ...] = ()) -> list[str]:
    """WARNING/ERROR/CRITICAL lines of the service's log not matching ``allow``
    (substrings)."""
    bad = []
    for line in svc.log_text().splitlines():
        if any(f"[{lvl}]" in line for lvl in ("WARNING", "ERROR", "CRITICAL")):
            if not any(a in line for a in allow):
                bad.append(line)
    return bad
