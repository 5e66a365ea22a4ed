"""What a device's transitions are told as: the NetworkChange events of
spec 8, built from its configuration (pure; session.py emits them).

Order and content are the original's: DEVICE_ADDED, IPADDR_ADDED for every
stored address, ROUTE_ADDED or ROUTE_EXCLUDED for every stored network (not
the def1 halves) at Establish; the reverse at teardown, only for what was
still ours.
"""

from __future__ import annotations

import socket
from typing import Iterator

from .events import Change, ChangeType, EventSink, address_details, route_details
from .kernel.address import AddressOnLink
from .kernel.route import Route

EXTERNAL = "external"  # Change.origin of what others did


def established(config, ifname: str, gateways: dict[bool, str], events: EventSink) -> Iterator[Change]:
    if events.wants(ChangeType.DEVICE_ADDED):
        yield Change(ChangeType.DEVICE_ADDED, ifname)
    if events.wants(ChangeType.IPADDR_ADDED):
        for a in config.addresses:
            yield Change(ChangeType.IPADDR_ADDED, ifname, address_details(a.address, a.prefix, a.ipv6))
    if events.wants(ChangeType.ROUTE_ADDED | ChangeType.ROUTE_EXCLUDED):
        for n in config.networks:
            kind = ChangeType.ROUTE_EXCLUDED if n.exclude else ChangeType.ROUTE_ADDED
            yield Change(kind, ifname, route_details(n.address, n.prefix, n.ipv6, gateways[n.ipv6]))


def removed(config, ifname: str, routes: list[Route], addresses: list[AddressOnLink],
            events: EventSink) -> Iterator[Change]:
    """Teardown: only the client's own non-excluded networks (spec 8), not
    def1; and only those still ours: a route someone else deleted was
    reported then (Session.reconcile) and is no longer in the ledger."""
    if events.wants(ChangeType.ROUTE_REMOVED):
        present = {(r.family == socket.AF_INET6, r.dst, r.prefix) for r in routes}
        for n in config.networks:
            if not n.exclude and (n.ipv6, n.address, n.prefix) in present:
                yield Change(ChangeType.ROUTE_REMOVED, ifname, route_details(n.address, n.prefix, n.ipv6))
    if events.wants(ChangeType.IPADDR_REMOVED):
        for a in addresses:
            t = a.address
            yield Change(ChangeType.IPADDR_REMOVED, ifname, address_details(t.address, t.prefix, t.ipv6))
    if events.wants(ChangeType.DEVICE_REMOVED):
        yield Change(ChangeType.DEVICE_REMOVED, ifname)


def gone(config, objects: list, ifname: str, link_gone: bool) -> list[Change]:
    """What someone else removed, in teardown order: routes (the client's
    networks in its order, exclude routes too; not the def1 halves, which
    were never announced), addresses, the device."""
    out = []
    routes = {(r.family == socket.AF_INET6, r.dst, r.prefix) for r in objects if isinstance(r, Route)}
    for n in config.networks:
        if (n.ipv6, n.address, n.prefix) in routes:
            out.append(Change(ChangeType.ROUTE_REMOVED, ifname, route_details(n.address, n.prefix, n.ipv6),
                              origin=EXTERNAL))
    for a in (e.address for e in objects if isinstance(e, AddressOnLink)):
        out.append(Change(ChangeType.IPADDR_REMOVED, ifname, address_details(a.address, a.prefix, a.ipv6),
                          origin=EXTERNAL))
    if link_gone:
        out.append(Change(ChangeType.DEVICE_REMOVED, ifname, {}, origin=EXTERNAL))
    return out


def excluded_moved(moved: list[tuple[Route, Route]], ifname: str) -> list[Change]:
    """Exclude routes that followed the uplink: ROUTE_EXCLUDED again, with the uplink gateway."""
    return [Change(ChangeType.ROUTE_EXCLUDED, ifname,
                   route_details(new.dst, new.prefix, new.family == socket.AF_INET6, new.gateway or ""))
            for _, new in moved]
