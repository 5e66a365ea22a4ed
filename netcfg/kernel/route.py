"""Routes: the AddNetworks value type, the kernel route object, its encoding.

A `Network` is what a client asked for (validated at call time: canonical,
prefix in range).  A `Route` is the kernel object netcfg installs; its
identity is the kernel's own key, and it knows how to encode its add and
its delete as rtnetlink messages (sent in batches by kernel/batch.py).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from ..errors import InvalidArgument
from .address import check_prefix, family_name, parse_ip, printable

# Every route netcfg installs carries this protocol number, so the kernel
# itself tells ours from everyone else's (`ip route show proto 111`).
RTPROT_NETCFG = 111
RT_TABLE_MAIN = 254
METRIC_MAX = 2**32 - 1


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


def describe_family(family: int) -> str:
    return family_name(family == socket.AF_INET6)
