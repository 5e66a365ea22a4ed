"""Helpers for the device life-cycle tests (tests/service/test_establish.py,
test_cleanup.py, test_service_lifetime.py, test_log_and_properties.py).

* ``Netcfg`` and ``CallFailed``, the step builders ``mgr_step``,
  ``dev_step``, ``set_step``, ``get_step``: ``support.dbuscalls``'s (the
  one client API), imported here for these tests; plus ``configure_steps``
  and ``Netcfg.configure``'s standard configuration.
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
import re
import socket
import struct
import time
from typing import Any, Awaitable, Callable

from .dbuscalls import (  # noqa: F401  (one API and one set of names: the tests import them from here too)
    ACCESS_DENIED, ADDR4, ADDR6, INTERFACE, INTROSPECTABLE, INVALID_ARGS, NETCFG_ERROR, NETWORKS, PROPERTIES, REMOTE,
    UNKNOWN_OBJECT, V6_DEFAULT_METRIC, CallFailed, Netcfg, dev_step, get_step, mgr_step, set_step,
)
from .netns import Netns

IFACE, PROPS = INTERFACE, PROPERTIES

def child_nodes(xml: str) -> list[str]:
    """The child nodes an Introspect reply lists."""
    return re.findall(r'<node name="([^"]+)"/>', xml)


# -- client runner steps ----------------------------------------------------
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
