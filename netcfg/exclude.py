"""Exclude routes: networks a client keeps out of its tunnel (AddNetworks, exclude=true).

Each goes `via <uplink gateway of its family> dev <uplink>`, the gateway the
kernel would use without our tunnels (kernel/uplink.py), for IPv4 and IPv6
alike (the original skips IPv6, spec 5.5).  Establish refuses with NoUplink,
before anything is created, when a family that has excludes has no uplink.

Already satisfied: an excluded network that the main table already routes
outside our tunnels with exactly its destination and prefix (the user's
own LAN, pushed as `route 192.168.1.0 255.255.255.0 net_gateway`, next to
the connected `proto kernel` route) needs no route of ours: its traffic
leaves outside the tunnel already.  It is not installed (the kernel would
answer EEXIST to an IPv4 route with the same metric, which failed the
whole Establish) and not put in the ledger, so Destroy leaves the existing
route alone; it is logged at info.  Whatever the existing route's protocol
(kernel, static, dhcp, ra, ...), except netcfg's own (protocol 111): another
device's exclude route leaves with that device, so it satisfies nothing and
a collision with it still fails.  Such a network still counts as excluded:
subscribers get its ROUTE_EXCLUDED at Establish like every other excluded
network (spec 8: one event per excluded network).  It needs no uplink
either, so it cannot fail the call with NoUplink.  Everything else stays
all or nothing: a route of ours that collides with an existing one fails
the Establish with an error naming the route.

While the device is up the routes follow the uplink (kernel/follow.py): a
moved route is replaced through the device's ledger (journaled) and
subscribers get ROUTE_EXCLUDED again for it, now with the uplink gateway
as `gateway` (at Establish that key carries the VPN gateway, spec 8).  A
network that was satisfied at Establish is added by a later round only if
the existing route is gone by then; a route of ours keeps following the
uplink even if someone adds an equal route later.
"""

from __future__ import annotations

import logging
import socket

from .errors import NoUplink
from .kernel.ip import family_name
from .kernel.route import Network, Route
from .kernel.uplink import UplinkView

log = logging.getLogger(__name__)


def destination(route_or_network) -> tuple[bool, str, int]:
    """(ipv6, address, prefix): what an excluded network and its route have in common."""
    if isinstance(route_or_network, Route):
        return route_or_network.family == socket.AF_INET6, route_or_network.dst, route_or_network.prefix
    return route_or_network.ipv6, route_or_network.address, route_or_network.prefix


def exclude_routes(networks: list[Network], view: UplinkView, strict: bool = True,
                   ours: frozenset | set = frozenset()) -> list[Route]:
    """The kernel routes for the excluded networks; `strict`: NoUplink for a family without uplink.

    A network already satisfied (`view.exact`: routed outside the tunnels
    with its very destination and prefix) gets no route, unless its
    `destination` is in `ours`: a route we hold keeps following the uplink.
    """
    routes = []
    for n in networks:
        if not n.exclude or (destination(n) not in ours and view.exact(n.address, n.prefix) is not None):
            continue
        hop = view.default(n.ipv6)
        if hop is None:
            if strict:
                raise NoUplink(f"exclude route {n}: no {family_name(n.ipv6)} uplink "
                               f"(no {family_name(n.ipv6)} default route outside the tunnels)")
            continue
        routes.append(Route(n.family, n.address, n.prefix, hop.oif, hop.gateway, n.metric))
    return routes


def plan(networks: list[Network], view: UplinkView) -> list[Route]:
    """Exclude routes for an Establish; NoUplink if a family with excludes has no uplink."""
    for n in networks:
        existing = view.exact(n.address, n.prefix) if n.exclude else None
        if existing is not None:
            log.info("exclude route %s: already routed outside the tunnels (%s), nothing to install",
                     n, existing)
    return exclude_routes(networks, view)


def follow(networks: list[Network], view: UplinkView, held: list[Route]) -> list[Route]:
    """Where a device's exclude routes belong now that the uplink moved.

    A route we hold keeps its metric: it may have gone in behind another
    owner's route to the same destination at a higher one (kernel/route.py,
    RouteKind.alternative), and it must be replaced in its own place.
    """
    metrics = {destination(r): r.metric for r in held}
    desired = exclude_routes(networks, view, strict=False, ours=set(metrics))
    return [r if destination(r) not in metrics else Route(r.family, r.dst, r.prefix, r.oif, r.gateway,
                                                           metrics[destination(r)], r.table, r.proto)
            for r in desired]
