"""Routes: the AddNetworks value type, the kernel route object, its encoding.

A `Network` is what a client asked for (validated at call time: canonical,
prefix in range).  A `Route` is the kernel object netcfg installs; its
identity is the kernel's own key, and it knows how to encode its add and
its delete as rtnetlink messages (sent in batches by kernel/batch.py).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import struct
from dataclasses import dataclass

from ..errors import InvalidArgument, KernelRefused
from .ip import check_prefix, family_name, parse_ip, printable
from .kinds import Kind, register
from .nlmsg import ATTR, HEADER, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, U32_ATTR

# Every route netcfg installs carries this protocol number, so the kernel
# itself tells ours from everyone else's (`ip route show proto 111`).
RTPROT_NETCFG = 111
RT_TABLE_MAIN = 254
METRIC_MAX = 2**32 - 1
IPV6_DEFAULT_METRIC = 1024  # what the kernel gives an IPv6 route sent without one (IPv4: 0)
# Routes of several owners to one destination (two tunnels pushing the same
# network, two excludes of it, two callers protecting one server): each
# after the first goes in at the next free metric, up to this many in all.
SHARED_METRICS = 64

# rtnetlink wire constants (linux/netlink.h, linux/rtnetlink.h).
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
RTN_UNICAST = 1
RT_TABLE_UNSPEC = 0
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255

# Add refuses to replace anything (EXCL): a route someone else already
# installed is theirs, and must come back as EEXIST, not be taken over.
_REQUEST = {
    "add": (RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL),
    "del": (RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK),
}
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags


@dataclass(frozen=True, slots=True)
class Network:
    """One AddNetworks entry (address, prefix_size, metric, ipv6, exclude)."""

    address: str  # canonical network address
    prefix: int
    metric: int | None  # None = kernel default (the client sends -1)
    ipv6: bool
    exclude: bool

    @classmethod
    def from_wire(cls, address: str, prefix: int, metric: int, ipv6: bool, exclude: bool) -> "Network":
        ip = parse_ip(address, ipv6, "network address")
        check_prefix(prefix, ipv6, "network prefix_size")
        net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
        if net.network_address != ip:
            raise InvalidArgument(
                f"network '{printable(address)}/{prefix}' is not canonical (host bits set; did you mean {net}?)"
            )
        return cls(str(ip), prefix, metric if metric > 0 else None, ipv6, exclude)

    @property
    def family(self) -> int:
        return socket.AF_INET6 if self.ipv6 else socket.AF_INET

    @property
    def ip_version(self) -> str:
        return "6" if self.ipv6 else "4"

    def __str__(self) -> str:
        return f"{self.address}/{self.prefix}"


# redirect-gateway "def1" halves (spec 5.3): they beat a default route
# without replacing it.
DEF1_V4 = (Network("0.0.0.0", 1, None, False, False), Network("128.0.0.0", 1, None, False, False))
DEF1_V6 = (Network("::", 1, None, True, False), Network("8000::", 1, None, True, False))


@dataclass(frozen=True, slots=True)
class Route:
    """A kernel route netcfg owns.  Field order = how a reader names it."""

    family: int  # socket.AF_INET / AF_INET6
    dst: str  # canonical network address
    prefix: int
    oif: int  # output interface index
    gateway: str | None = None
    metric: int | None = None  # None: no RTA_PRIORITY, kernel default
    table: int = RT_TABLE_MAIN
    proto: int = RTPROT_NETCFG

    def __str__(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        metric = f" metric {self.metric}" if self.metric is not None else ""
        table = f" table {self.table}" if self.table != RT_TABLE_MAIN else ""
        return f"route {self.dst}/{self.prefix}{via} dev #{self.oif}{metric}{table}"

    def encode(self, op: str, seq: int) -> bytes:
        """One complete rtnetlink request ("add" or "del") with sequence number `seq`.

        Plain struct packing: kernel/batch.py encodes thousands of these per
        call, and pyroute2's encoder costs ~0.3 ms per route.
        """
        msg_type, flags = _REQUEST[op]
        body = self._rtmsg(op) + self._attributes()
        return HEADER.pack(HEADER.size + len(body), msg_type, flags, seq, 0) + body

    def _rtmsg(self, op: str) -> bytes:
        # Tables above 255 only fit RTA_TABLE (which wins anyway); rtm_table
        # then says UNSPEC, as iproute2 does.  rtm_protocol is also set on
        # delete: the kernel then only removes a route carrying our mark.
        table = self.table if self.table < 256 else RT_TABLE_UNSPEC
        return _RTMSG.pack(self.family, self.prefix, 0, 0, table, self.proto, self._scope(op), RTN_UNICAST, 0)

    def _scope(self, op: str) -> int:
        # Delete with NOWHERE: the IPv4 FIB matches any scope then, so a
        # route whose scope was changed behind our back still goes away.
        if op == "del":
            return RT_SCOPE_NOWHERE
        # A gatewayless IPv4 route is on-link (what iproute2 sets); IPv6
        # has no route scopes and wants UNIVERSE.
        if not self.gateway and self.family == socket.AF_INET:
            return RT_SCOPE_LINK
        return RT_SCOPE_UNIVERSE

    def _attributes(self) -> bytes:
        # Addresses are 4 or 16 bytes, so no attribute needs padding.
        parts = []
        if self.prefix:
            parts.append(_address_attr(RTA_DST, self.family, self.dst))
        parts.append(U32_ATTR.pack(8, RTA_OIF, self.oif))
        if self.gateway:
            parts.append(_address_attr(RTA_GATEWAY, self.family, self.gateway))
        if self.metric is not None:
            parts.append(U32_ATTR.pack(8, RTA_PRIORITY, self.metric))
        parts.append(U32_ATTR.pack(8, RTA_TABLE, self.table))
        return b"".join(parts)


def _address_attr(kind: int, family: int, text: str) -> bytes:
    raw = socket.inet_pton(family, text)
    return ATTR.pack(4 + len(raw), kind) + raw


def describe_family(family: int) -> str:
    return family_name(family == socket.AF_INET6)


def effective_metric(route: Route) -> int:
    """The metric the kernel gives the route (its default when we send none)."""
    if route.metric is not None:
        return route.metric
    return IPV6_DEFAULT_METRIC if route.family == socket.AF_INET6 else 0


class RouteKind(Kind[Route]):
    """Routes go in and out in batches (kernel/batch.py, `nl.routes`).

    A destination someone holds already (same table, prefix and metric)
    is answered EEXIST; `alternative` then offers the next metric, so the
    route goes in behind the one that was there first: that one keeps the
    traffic, and when it goes, the kernel falls back to ours at once (see
    docs/architecture.md, "Two devices, one destination").
    """

    name, type = "route", Route

    async def create(self, nl, objs: list[Route]) -> list[tuple[Route, KernelRefused]]:
        failures = await nl.routes.add(objs)
        return [(f.route, KernelRefused("add", f.route, f.errno, f.extack)) for f in failures]

    async def remove(self, nl, objs: list[Route]) -> list[tuple[Route, KernelRefused]]:
        failures = await nl.routes.delete(objs)
        return [(f.route, KernelRefused("delete", f.route, f.errno, f.extack)) for f in failures]

    def alternative(self, wanted: Route, attempt: int) -> Route | None:
        metric = effective_metric(wanted) + attempt
        if attempt >= SHARED_METRICS or metric > METRIC_MAX:
            return None
        return dataclasses.replace(wanted, metric=metric)

    def observed_key(self, route: Route) -> tuple:
        return ("route", route.family == socket.AF_INET6, route.dst, route.prefix, route.oif, route.table,
                effective_metric(route))

    def link_of(self, route: Route) -> int:
        return route.oif


ROUTES = register(RouteKind())
