"""Which way a packet would leave if netcfg's tunnels were not there.

ProtectSocket's host route and the exclude routes go "via the gateway the
kernel would use while ignoring netcfg's tun devices" (spec 5.5, 6).  The
kernel cannot answer that question directly, so we take the main table,
drop routes on our devices and our own routes, and do the longest-prefix
match ourselves (`best_route` is pure and unit-tested).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from .netlink import Netlink, refused
from .route import RT_TABLE_MAIN, RTPROT_NETCFG

RTN_UNICAST = 1


@dataclass(frozen=True, slots=True)
class Hop:
    """A route candidate: destination network, its gateway (or None) and device."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: str | None
    oif: int
    metric: int = 0


def best_route(candidates: list[Hop], dst: str) -> Hop | None:
    """Longest prefix wins; among equals, the lowest metric."""
    ip = ipaddress.ip_address(dst)
    matching = [h for h in candidates if h.network.version == ip.version and ip in h.network]
    if not matching:
        return None
    return min(matching, key=lambda h: (-h.network.prefixlen, h.metric))


def _hop(msg) -> Hop | None:
    if msg.get("type", RTN_UNICAST) != RTN_UNICAST or msg.get("proto") == RTPROT_NETCFG:
        return None
    family = msg["family"]
    dst = msg.get("dst") or ("0.0.0.0" if family == socket.AF_INET else "::")
    oif, gateway = msg.get("oif"), msg.get("gateway")
    multipath = msg.get("multipath")
    if multipath and not oif:
        first = multipath[0]
        oif, gateway = first["oif"], first.get("gateway")
    if not oif:
        return None
    network = ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False)
    return Hop(network, gateway, oif, msg.get("priority") or 0)


async def candidates(nl: Netlink, family: int, avoid: set[int]) -> list[Hop]:
    hops = []
    async with refused("dump routes", "main table"):
        async for msg in await nl.ipr.route("dump", family=family, table=RT_TABLE_MAIN):
            hop = _hop(msg)
            if hop and hop.oif not in avoid:
                hops.append(hop)
    return hops


async def uplink_for(nl: Netlink, dst: str, avoid: set[int]) -> Hop | None:
    """The hop towards `dst` outside the devices in `avoid` (our tunnels)."""
    family = socket.AF_INET6 if ipaddress.ip_address(dst).version == 6 else socket.AF_INET
    return best_route(await candidates(nl, family, avoid), dst)
