"""Helpers of the ProtectSocket / redirect-gateway tests (tests/service/test_protect*.py).

* ``Netcfg(bus)``: the one client (``support.dbuscalls``) with a ``device``
  made the way these tests need it; ``bring_up`` keeps the tun fd open.
* ``socket_in(netns, family)``: a UDP socket created INSIDE a namespace.  A
  socket's namespace is fixed when it is made; SO_BINDTODEVICE looks the
  device up there, and connect() does its route lookup there.  A helper
  thread enters the namespace (setns is per thread), makes the socket and
  exits, so the test's own threads never change namespace.
* ``add_vpn_server(netns)``: the "VPN server" addresses on the router's lo.
* ``route_get(netns, dst, *selectors)``: ``ip route get`` parsed.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading

from . import dbuscalls
from .dbuscalls import INTERFACE, MANAGER, NETCFG_ERROR, CallFailed, dev_step, mgr_step  # noqa: F401
from .lifecycle import wait_until  # noqa: F401  (the tests import it from here)
from .netns import Netns

SERVER4, SERVER6 = "198.51.100.1", "2001:db8:100::1"  # on the router's lo
OUTSIDE4, OUTSIDE6 = "203.0.113.7", "2001:db8:7::7"  # anywhere else: into the tun
TUN4, TUN6 = ("10.8.0.2", 24, "10.8.0.1"), ("fd00:8::2", 64, "fd00:8::1")
EXCLUDE4, EXCLUDE6 = ("198.18.5.0", 24), ("2001:db8:55::", 48)
MARK = 0x4F56
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class Netcfg(dbuscalls.Netcfg):
    """The one client (support.dbuscalls.Netcfg), plus the protection tests' device."""

    async def device(self, name: str, *, reroute: bool = True, excludes: bool = True) -> str:
        """A configured (not yet established) device: both tunnel addresses, redirect, excludes."""
        path = await self.create(name)
        await self.set(path, "layer", "u", 3)
        for ipv6, (addr, prefix, gw) in ((False, TUN4), (True, TUN6)):
            await self.call(path, "AddIPAddress", "susb", [addr, prefix, gw, ipv6])
        await self.call(path, "SetRemoteAddress", "sb", [SERVER4, False])
        if reroute:
            await self.set(path, "reroute_ipv4", "b", True)
            await self.set(path, "reroute_ipv6", "b", True)
        if excludes:
            nets = [[EXCLUDE4[0], EXCLUDE4[1], -1, False, True], [EXCLUDE6[0], EXCLUDE6[1], -1, True, True]]
            await self.call(path, "AddNetworks", "a(suibb)", [nets])
        return path


def socket_in(netns: Netns, family: int = socket.AF_INET) -> socket.socket:
    made: list = []

    def make() -> None:
        try:
            fd = os.open(f"/run/netns/{netns.name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            made.append(socket.socket(family, socket.SOCK_DGRAM))
        except BaseException as e:  # reported in the caller's thread
            made.append(e)

    thread = threading.Thread(target=make)  # ends in the namespace, and is gone
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


def source_toward(sock: socket.socket, dst: str) -> str:
    """The source address the kernel picks for `dst` (UDP connect sends nothing)."""
    sock.connect((dst, 1194))
    return sock.getsockname()[0]


def add_vpn_server(netns: Netns) -> None:
    router = netns.router
    router.ip("addr", "replace", f"{SERVER4}/32", "dev", "lo")
    router.ip("addr", "replace", f"{SERVER6}/128", "dev", "lo")


def route_get(netns: Netns, dst: str, *selectors: str) -> dict:
    """``ip route get DST [mark M | oif DEV ...]``: dev, gateway, prefsrc, table."""
    return netns.ip_json("route", "get", dst, *selectors)[0]


def fwmark_rules(netns: Netns) -> list[dict]:
    return [r for fam in (4, 6) for r in netns.rules(fam) if "fwmark" in r]



def client_steps(name: str, protect: str = SERVER4) -> list[dict]:
    """Client runner steps: a device like ``Netcfg.device``, ProtectSocket (with
    one of the runner's UDP sockets), Establish.  The runner keeps the tun fd."""
    dev = {"ref": [0, 0]}

    def prop(name: str, sig: str, value) -> dict:
        return dbuscalls.set_step(dev, name, sig, value)

    nets = [[EXCLUDE4[0], EXCLUDE4[1], -1, False, True], [EXCLUDE6[0], EXCLUDE6[1], -1, True, True]]
    ipv6 = ":" in protect
    return [
        mgr_step("CreateVirtualInterface", "s", [name]),
        prop("layer", "u", 3), prop("reroute_ipv4", "b", True), prop("reroute_ipv6", "b", True),
        dev_step(dev, "AddIPAddress", "susb", [*TUN4, False]),
        dev_step(dev, "AddIPAddress", "susb", [*TUN6, True]),
        dev_step(dev, "SetRemoteAddress", "sb", [SERVER4, False]),
        dev_step(dev, "AddNetworks", "a(suibb)", [nets]),
        mgr_step("ProtectSocket", "sbo", [protect, ipv6, dev], fd="udp6" if ipv6 else "udp4"),
        dev_step(dev, "Establish"),
    ]


def ours(netns: Netns) -> dict:
    """Everything netcfg may have put into the namespace: tun links, protocol-111
    routes (any table), fwmark rules."""
    return {
        "tuns": [n for n in netns.link_names() if n.startswith(("tun", "tap"))],
        "routes": [(r["family"], r["table"], r["dst"], r.get("gateway")) for r in netns.netcfg_routes()],
        "rules": [(r["family"], r["priority"], r.get("fwmark")) for r in fwmark_rules(netns)],
    }


def nothing_left(netns: Netns) -> bool:
    return not any(ours(netns).values())
