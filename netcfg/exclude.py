"""Exclude routes: networks a client keeps out of its tunnel (AddNetworks, exclude=true).

Each goes `via <uplink gateway of its family> dev <uplink>`, the gateway the
kernel would use without our tunnels (kernel/uplink.py), for IPv4 and IPv6
alike (the original skips IPv6, spec 5.5).  Establish refuses with NoUplink,
before anything is created, when a family that has excludes has no uplink.

While the device is up the routes follow the uplink (kernel/follow.py): a
moved route is replaced through the device's ledger (journaled) and
subscribers get ROUTE_EXCLUDED again for it, now with the uplink gateway
as `gateway` (at Establish that key carries the VPN gateway, spec 8).
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from .errors import NoUplink
from .events import Change, ChangeType, route_details
from .kernel.ip import family_name
from .kernel.route import Network, Route
from .kernel.uplink import UplinkView, retarget, slot_key

if TYPE_CHECKING:
    from .registry import Context
    from .session import Session

log = logging.getLogger(__name__)


def exclude_routes(networks: list[Network], view: UplinkView, strict: bool = True) -> list[Route]:
    """The kernel routes for the excluded networks; `strict`: NoUplink for a family without uplink."""
    routes = []
    for n in networks:
        if not n.exclude:
            continue
        hop = view.default(n.ipv6)
        if hop is None:
            if strict:
                raise NoUplink(f"exclude route {n}: no {family_name(n.ipv6)} uplink "
                               f"(no {family_name(n.ipv6)} default route outside the tunnels)")
            continue
        routes.append(Route(n.family, n.address, n.prefix, hop.oif, hop.gateway, n.metric))
    return routes


async def plan(ctx: "Context", networks: list[Network]) -> list[Route]:
    """Exclude routes for an Establish (reads the routing table only when there are excludes)."""
    if not any(n.exclude for n in networks):
        return []
    return exclude_routes(networks, await UplinkView.read(ctx.nl, ctx.tunnel_ifindexes()))


async def follow(session: "Session", view: UplinkView) -> None:
    """The uplink moved: move this device's exclude routes with it."""
    from .session import State

    async with session.lock:
        if session.state is not State.ESTABLISHED or session.ledger is None:
            return
        desired = exclude_routes(session.config.networks, view, strict=False)
        keys = {slot_key(r) for r in desired}
        current = [r for r in session.ledger.objects(Route) if slot_key(r) in keys]
        moved = await retarget(session.ledger, current, desired)
        if not moved or not session.ctx.events.wants(ChangeType.ROUTE_EXCLUDED):
            return
        for _, new in moved:
            details = route_details(new.dst, new.prefix, new.family == socket.AF_INET6, new.gateway or "")
            session.ctx.events.emit(session.path, Change(ChangeType.ROUTE_EXCLUDED, session.device_name, details))
