"""The directly connected networks, for allow-lan: from the kernel's addresses.

A network is "directly connected" when this host has an address in it on a
link that is not loopback and not one of netcfg's tunnels (the tunnel's own
subnet is reached through the tunnel anyway).  IPv6 link-local addresses
are covered by fe80::/10 in the rules already.  Addresses, not routes: the
LAN is what the host sits on, and the rules must not grow with routes.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def connected(addresses: Iterable[tuple[int, int, str, int]], skip: set[int]) -> tuple[IPNetwork, ...]:
    """(ifindex, family, address, prefixlen) -> the networks, sorted, without duplicates."""
    nets = set()
    for ifindex, family, address, prefixlen in addresses:
        if ifindex in skip or family not in (socket.AF_INET, socket.AF_INET6):
            continue
        net = ipaddress.ip_interface(f"{address}/{prefixlen}").network
        if net.is_loopback or (net.version == 6 and net.is_link_local):
            continue
        nets.add(net)
    return tuple(sorted(nets, key=lambda n: (n.version, n)))


async def dump(ipr, skip: set[int]) -> tuple[IPNetwork, ...]:
    """The connected networks now, from an AsyncIPRoute address dump."""
    rows = []
    async for msg in await ipr.addr("dump"):
        address = msg.get("address")
        if address:
            rows.append((msg["index"], msg["family"], address, msg["prefixlen"]))
    return connected(rows, skip)
