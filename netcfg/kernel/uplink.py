"""Which way a packet would leave if netcfg's tunnels were not there.

ProtectSocket's host route and the exclude routes go "via the gateway the
kernel would use while ignoring netcfg's tun devices" (spec 5.5, 6).  The
kernel cannot answer that question directly, so we take the main table,
drop routes on our devices and our own routes, and do the longest-prefix
match ourselves (`best_route` is pure and unit-tested).

`UplinkView` is one such reading of both families, for callers that need
many answers at once (the uplink follower, kernel/follow.py); `retarget`
moves routes a ledger holds to where the uplink is now.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

from ..errors import KernelRefused
from .netlink import Netlink, refused
from .route import RT_TABLE_MAIN, RTPROT_NETCFG, Route

log = logging.getLogger(__name__)

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


class UplinkView:
    """The main table without our tunnels and our routes, both families, read once."""

    def __init__(self, hops: list[Hop]) -> None:
        self.hops = hops

    @classmethod
    async def read(cls, nl: Netlink, avoid: set[int]) -> "UplinkView":
        hops = await candidates(nl, socket.AF_INET, avoid) + await candidates(nl, socket.AF_INET6, avoid)
        return cls(hops)

    def toward(self, dst: str) -> Hop | None:
        return best_route(self.hops, dst)

    def default(self, ipv6: bool) -> Hop | None:
        """The hop of the family's default gateway (what exclude routes and the mark table use)."""
        return best_route(self.hops, "::" if ipv6 else "0.0.0.0")


def route_key(route: Route) -> tuple:
    """What makes two routes the same kernel route, whatever their next hop."""
    return (route.family, route.dst, route.prefix, route.metric, route.table)


async def retarget(ledger, current: list[Route], desired: list[Route]) -> list[tuple[Route, Route]]:
    """Make the ledger's `current` routes look like `desired` (matched by kernel key).

    A route whose next hop differs is replaced (journaled, kernel/ledger.py),
    one that is missing is added, one that is unchanged is added again in
    case the kernel dropped it (a link flap flushes IPv4 routes; EEXIST is
    fine).  Routes with no desired counterpart are left alone: without an
    uplink for a family the last known path is kept.  Returns the
    (old, new) pairs that now hold, for the route events.
    """
    have = {route_key(r): r for r in current}
    pairs, missing, same = [], [], []
    for want in desired:
        old = have.get(route_key(want))
        if old is None:
            missing.append(want)
        elif old != want:
            pairs.append((old, want))
        else:
            same.append(old)
    errors = await ledger.replace(pairs)
    errors += await ledger.ensure(same)
    try:
        await ledger.apply(missing)
    except KernelRefused as e:
        errors.append(e)
    for error in errors:
        log.warning("%s: following the uplink: %s", ledger.key, error)
    for old, new in pairs:
        log.info("%s: %s moved with the uplink: now%s dev #%d", ledger.key, old,
                 f" via {new.gateway}" if new.gateway else "", new.oif)
    return [(old, new) for old, new in pairs if any(e is new for e in ledger.entries)]
