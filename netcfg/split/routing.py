"""Split tunnelling's policy rules and routing tables (planned, pure).

A mark set by the `split_route` chain (rules.py) is routed by a rule of
ours, before the main table (where the VPN's routes are):

    PRIORITY      fwmark BYPASS   lookup BYPASS_TABLE   (both families)
    PRIORITY+1    fwmark VPN_ONLY lookup VPN_TABLE
    PRIORITY+2    (include mode)  lookup BYPASS_TABLE   every packet not routed above

BYPASS_TABLE holds copies of the uplink's routes: the main table without
netcfg's routes and without routes on netcfg's tunnels (kernel/uplink.py's
`UplinkView`), so "as if no VPN were up", LAN and other local networks
included, not only the default gateway.  VPN_TABLE holds a default route
into the tunnel per family.  A packet a table has no route for falls
through to the main table; rules.py's `split_guard` then drops what must
not take that way (a bypassed packet into a tunnel, a vpn-only one
elsewhere).  The number of rules is fixed: 4, or 6 in include mode; the
tables hold the uplink's few routes and two defaults, whatever the VPN
pushed.

Rules and routes are kernel/rule.py's and kernel/route.py's kinds (protocol
111), so the ledger and journal handle them like every other.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ..kernel.route import Route
from ..kernel.rule import Rule
from ..kernel.uplink import UplinkView
from .rules import SplitMarks

FAMILIES = (socket.AF_INET, socket.AF_INET6)


@dataclass(frozen=True)
class SplitTables:
    bypass: int = 112
    vpn_only: int = 113
    priority: int = 1000  # the bypass rule; vpn-only and include follow it


def policy_rules(tables: SplitTables, marks: SplitMarks, include: bool) -> list[Rule]:
    rules = []
    for family in FAMILIES:
        rules.append(Rule(family, tables.priority, marks.bypass, tables.bypass))
        rules.append(Rule(family, tables.priority + 1, marks.vpn_only, tables.vpn_only))
        if include:  # mark 0 under mask 0: every packet
            rules.append(Rule(family, tables.priority + 2, 0, tables.bypass, fwmask=0))
    return rules


def bypass_routes(tables: SplitTables, view: UplinkView) -> list[Route]:
    """Copies of the uplink's routes (one per kernel key) into the bypass table."""
    routes: dict[tuple, Route] = {}
    for hop in view.hops:
        family = socket.AF_INET6 if hop.network.version == 6 else socket.AF_INET
        route = Route(family, str(hop.network.network_address), hop.network.prefixlen, hop.oif, hop.gateway,
                      hop.metric or None, table=tables.bypass)
        routes.setdefault((family, route.dst, route.prefix, route.metric), route)
    return list(routes.values())


def vpn_routes(tables: SplitTables, tunnel: int | None, gateways: dict[int, str | None] | None = None) -> list[Route]:
    """A default route into the tunnel per family (none without a tunnel: the guard drops).

    `gateways`: the VPN gateway per family (socket.AF_INET/AF_INET6), as
    the device's own routes use it (session.py); None: on-link, as on a tun.
    """
    if tunnel is None:
        return []
    gateways = gateways or {}
    return [Route(socket.AF_INET, "0.0.0.0", 0, tunnel, gateways.get(socket.AF_INET), table=tables.vpn_only),
            Route(socket.AF_INET6, "::", 0, tunnel, gateways.get(socket.AF_INET6), table=tables.vpn_only)]
