"""Which way a packet would leave if netcfg's tunnels were not there.

ProtectSocket's host route and the exclude routes go "via the gateway the
kernel would use while ignoring netcfg's tun devices" (spec 5.5, 6).  The
kernel cannot answer that question directly, so we take the main table,
drop routes on our devices and our own routes, and do the longest-prefix
match ourselves (`best_route` is pure and unit-tested).

Reading the main table: a device may hold 10,000 routes, all in the main
table.  pyroute2 decodes ~100 us a route, which made every ProtectSocket
take ~1 s and the uplink follower hold up the loop.  So the table is read
with kernel/rtnl.py's raw parser instead: one strict-checked dump per
family asking the kernel for table main and unicast routes only, our own
routes (protocol 111) skipped on one byte before anything is decoded,
routes on our tunnels before anything is built from them.

`UplinkView` is one such reading of both families, for callers that need
many answers at once (ProtectSocket, an Establish's exclude routes, one
round of the uplink follower, kernel/follow.py); `retarget` moves routes a
ledger holds to where the uplink is now.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

from ..errors import KernelRefused
from . import rtnl
from .ip import family_name
from .route import RT_TABLE_MAIN, RTPROT_NETCFG, Route

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Hop:
    """A route candidate: destination network, its gateway (or None) and device."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: str | None
    oif: int
    metric: int = 0

    def __str__(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        return f"{self.network}{via} dev #{self.oif} metric {self.metric}"


def best_route(candidates: list[Hop], dst: str) -> Hop | None:
    """Longest prefix wins; among equals, the lowest metric."""
    ip = ipaddress.ip_address(dst)
    matching = [h for h in candidates if h.network.version == ip.version and ip in h.network]
    if not matching:
        return None
    return min(matching, key=lambda h: (-h.network.prefixlen, h.metric))


def _hop(kind: int, data: bytes, start: int, end: int, family: int, avoid: set[int]) -> Hop | None:
    """A dumped route as a candidate, or None: not unicast, ours, on a tunnel, another table or family."""
    if (kind != rtnl.RTM_NEWROUTE or rtnl.route_family(data, start) != family
            or rtnl.route_protocol(data, start) == RTPROT_NETCFG or rtnl.route_type(data, start) != rtnl.RTN_UNICAST
            or rtnl.route_oif(data, start, end) in avoid):
        return None
    route = rtnl.parse(kind, data, start, end)  # a RouteNotice; first hop of a multipath route
    # `avoid` again: a multipath route has no RTA_OIF, only its hops have one.
    if route.table != RT_TABLE_MAIN or not route.oif or route.oif in avoid:
        return None
    return Hop(ipaddress.ip_network(f"{route.dst}/{route.prefix}", strict=False), route.gateway, route.oif,
               route.metric or 0)


async def main_table(avoid: set[int], sock: socket.socket | None = None) -> list[Hop]:
    """The main table's unicast routes of both families, without ours and those on `avoid`.

    `sock`: a socket from `rtnl.dump_socket()` (tests open one in their
    namespace); by default one is opened for this reading and closed after
    it, so concurrent readings never share a socket.  On a kernel without
    strict checking the dump is unfiltered and `_hop` does all the sorting.
    """
    own = sock is None
    if own:
        sock = rtnl.dump_socket()
    hops: list[Hop] = []
    try:
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
            request = rtnl.route_dump_request(seq, family, RT_TABLE_MAIN)
            try:
                async for kind, data, start, end in rtnl.dump(sock, request):
                    hop = _hop(kind, data, start, end, family, avoid)
                    if hop is not None:
                        hops.append(hop)
            except rtnl.DumpRefused as e:
                raise KernelRefused("dump routes", f"main table ({family_name(family == socket.AF_INET6)})",
                                    e.errno or 0) from None
    finally:
        if own:
            sock.close()
    return hops


class UplinkView:
    """The main table without our tunnels and our routes, both families, read once."""

    def __init__(self, hops: list[Hop]) -> None:
        self.hops = hops
        self._exact: dict | None = None  # network -> its best hop, built on first use

    @classmethod
    async def read(cls, nl, avoid: set[int]) -> "UplinkView":
        """Read the main table now; `avoid`: our tunnels' ifindexes.

        `nl` (the service's Netlink) is not needed any more: the dump has a
        socket of its own (`main_table`).  It stays for the callers.
        """
        return cls(await main_table(avoid))

    def toward(self, dst: str) -> Hop | None:
        return best_route(self.hops, dst)

    def default(self, ipv6: bool) -> Hop | None:
        """The hop of the family's default gateway (what exclude routes and the mark table use)."""
        return best_route(self.hops, "::" if ipv6 else "0.0.0.0")

    def exact(self, dst: str, prefix: int) -> Hop | None:
        """The route for exactly `dst/prefix` (the lowest metric among several), if there is one."""
        if self._exact is None:
            self._exact = {}
            for hop in sorted(self.hops, key=lambda h: -h.metric):  # the lowest metric is written last
                self._exact[hop.network] = hop
        return self._exact.get(ipaddress.ip_network(f"{dst}/{prefix}", strict=False))


def slot_key(route: Route) -> tuple:
    """A route's place in the kernel: family, destination, prefix, metric, table.

    Two routes with the same slot collide on an exclusive add (EEXIST)
    whatever their next hops; `retarget` pairs old and new by it.  (Not
    foreign.py's `observed_key`, which matches notices to ledger entries.)
    """
    return (route.family, route.dst, route.prefix, route.metric, route.table)


async def retarget(ledger, current: list[Route], desired: list[Route]) -> list[tuple[Route, Route]]:
    """Make the ledger's `current` routes look like `desired` (matched by slot_key).

    A route whose next hop differs is replaced (journaled, kernel/ledger.py),
    one that is missing is added, one that is unchanged is added again in
    case the kernel dropped it (a link flap flushes IPv4 routes; EEXIST is
    fine).  Routes with no desired counterpart are left alone: without an
    uplink for a family the last known path is kept.  Returns the
    (old, new) pairs that now hold, for the route events.
    """
    have = {slot_key(r): r for r in current}
    pairs, missing, same = [], [], []
    for want in desired:
        old = have.get(slot_key(want))
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
