"""How kernel notices and dumps compare with a session's ledger (pure).

Session.reconcile (session.py) uses these to find what someone else
removed from a device and what someone else added to its link; the
session alone then changes its ledger and reports the events.  Keys: a
kernel kind says how notices name its objects (`Kind.observed_key`,
kernel/kinds.py); `notice_key` says the same of a notice.
"""

from __future__ import annotations

import ipaddress

from .device_events import EXTERNAL
from .events import Change, ChangeType, address_details, route_details
from .kernel import kinds
from .kernel.link import TunLink
from .kernel.notices import AddressNotice, LinkNotice, Notice, RouteNotice
from .kernel.route import IPV6_DEFAULT_METRIC, RT_TABLE_MAIN, RTPROT_NETCFG
RTPROT_KERNEL = 2  # prefix routes the kernel adds for an address


def notice_key(n: Notice) -> tuple | None:
    """How a notice names its object, in the form of `Kind.observed_key`."""
    if isinstance(n, RouteNotice):
        metric = n.metric if n.metric is not None else (IPV6_DEFAULT_METRIC if n.ipv6 else 0)
        return ("route", n.ipv6, n.dst, n.prefix, n.oif, n.table, metric)
    if isinstance(n, AddressNotice):
        return ("address", n.ifindex, n.address, n.prefix, n.ipv6)
    if isinstance(n, LinkNotice):
        return ("link", n.ifindex)
    return None


def observed_key(obj) -> tuple | None:
    return kinds.of(obj).observed_key(obj)


def on_link(obj, ifindex: int) -> bool:
    """Does `obj` go away with link `ifindex` (a route through it, an address on it)?"""
    return kinds.of(obj).link_of(obj) == ifindex and not isinstance(obj, TunLink)


def change_of_foreign(n: Notice, link: TunLink) -> Change | None:
    """Someone else's route or address added to / removed from our link, as an event (or None)."""
    if isinstance(n, RouteNotice):
        if n.oif != link.ifindex or n.proto in (RTPROT_KERNEL, RTPROT_NETCFG) or n.table != RT_TABLE_MAIN:
            return None  # kernel-made, or ours from an earlier ledger
        kind = ChangeType.ROUTE_ADDED if n.added else ChangeType.ROUTE_REMOVED
        gateway = (n.gateway or "") if n.added else None
        return Change(kind, link.ifname, route_details(n.dst, n.prefix, n.ipv6, gateway), origin=EXTERNAL)
    if isinstance(n, AddressNotice):
        if n.ifindex != link.ifindex or ipaddress.ip_address(n.address).is_link_local:
            return None  # the kernel's own IPv6 link-local address
        kind = ChangeType.IPADDR_ADDED if n.added else ChangeType.IPADDR_REMOVED
        return Change(kind, link.ifname, address_details(n.address, n.prefix, n.ipv6), origin=EXTERNAL)
    return None
