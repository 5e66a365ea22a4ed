"""What may leave the machine while leak protection holds, as nftables rules.

`LeakRules` is the whole input, a plain value; `ruleset()` turns it into
the table's content (kernel/nftspec.py) and is pure.  Both egress hooks
are covered: `output` (this host's own packets) and `forward` (containers
and VMs this host routes).  What passes, in order:

    output                                  forward
    loopback                                -
    sockets carrying an allowed mark        -
    through one of netcfg's tunnels         through one of netcfg's tunnels
    -                                       replies coming back from a tunnel
    DHCP, DHCPv6 on the uplinks             -
    ND, RS, MLD reports                     -
    allow-lan: connected networks and       the same
      link-local multicast, no DNS
    everything else: counted, dropped       the same

Tunnels are matched by interface index (`oif`), so a device someone else
creates later under the same name never matches; interfaces the admin
names (uplinks, for DHCP) by name, so a re-plugged uplink still gets its
lease.
The rule count depends on none of: routes, tunnels, marks, LAN networks
(each is one anonymous set in one rule).  Base chains have policy drop as
well as the counted drop at their end: should the rules ever be flushed
by someone else, the chain still fails closed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

from ..kernel.nftspec import (
    ACCEPT, DROP, Chain, Hook, Rule, TableContent, counter, jump, match, meta, one_or_set, payload,
    prefix,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

OUTPUT, FORWARD, LAN = "leak_output", "leak_forward", "leak_lan"
DROPPED = {  # (chain, family) -> counter name
    (OUTPUT, "ipv4"): "leak_output_ipv4", (OUTPUT, "ipv6"): "leak_output_ipv6",
    (FORWARD, "ipv4"): "leak_forward_ipv4", (FORWARD, "ipv6"): "leak_forward_ipv6",
}
LAN_DNS = "leak_lan_dns"
COUNTERS = tuple(DROPPED.values()) + (LAN_DNS,)
PRIORITY = 0  # "filter": after a route chain at mangle (-150) set a split-tunnel mark
DNS_PORTS = (53, 853)  # DNS, and DNS over TLS / QUIC
# Link-local multicast and limited broadcast: part of "the LAN" with allow-lan.
LINK_LOCAL_V4 = (ipaddress.ip_network("224.0.0.0/24"), ipaddress.ip_network("255.255.255.255/32"))
LINK_LOCAL_V6 = (ipaddress.ip_network("fe80::/10"), ipaddress.ip_network("ff02::/16"))
# What a host sends to keep its uplink working: router and neighbour
# solicitation, neighbour advertisement, and the MLD reports that let
# switches with MLD snooping deliver its solicited-node multicast.
ND_TYPES = ("nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert",
            "mld-listener-report", "mld2-listener-report")


@dataclass(frozen=True)
class LeakRules:
    """Everything the rules depend on."""

    tunnels: frozenset[int] = frozenset()  # ifindexes of netcfg's tunnels whose owners are alive
    marks: frozenset[int] = frozenset()  # socket marks allowed out anywhere (ProtectSocket's)
    uplinks: frozenset[str] = frozenset()  # interface names for DHCP/ND; empty: any interface
    allow_lan: bool = False
    lan: tuple[IPNetwork, ...] = ()  # the directly connected networks (used with allow_lan)


def ruleset(policy: LeakRules) -> TableContent:
    """The table content that enforces `policy` (pure)."""
    tunnels = sorted(policy.tunnels)
    lan_jumps = _lan_jumps(policy) if policy.allow_lan else []
    output = [Rule((match(meta("oif"), "lo"), ACCEPT), "loopback")]
    if policy.marks:
        output.append(Rule((match(meta("mark"), one_or_set(sorted(policy.marks))), ACCEPT), "protected sockets"))
    forward = []
    if tunnels:
        output.append(Rule((match(meta("oif"), one_or_set(tunnels)), ACCEPT), "netcfg tunnels"))
        forward.append(Rule((match(meta("oif"), one_or_set(tunnels)), ACCEPT), "netcfg tunnels"))
        forward.append(Rule((match(meta("iif"), one_or_set(tunnels)),
                             match({"ct": {"key": "state"}}, ["established", "related"], "in"), ACCEPT),
                            "replies from netcfg tunnels"))
    output += _uplink_upkeep(sorted(policy.uplinks))
    chains = [
        Chain(OUTPUT, tuple(output + lan_jumps + _drops(OUTPUT)), Hook("filter", "output", PRIORITY, "drop")),
        Chain(FORWARD, tuple(forward + lan_jumps + _drops(FORWARD)), Hook("filter", "forward", PRIORITY, "drop")),
    ]
    if policy.allow_lan:
        chains.append(Chain(LAN, (
            Rule((match(meta("l4proto"), {"set": ["tcp", "udp"]}), match(payload("th", "dport"), {"set": list(DNS_PORTS)}),
                  counter(LAN_DNS), DROP), "no DNS to the LAN"),
            Rule((ACCEPT,), "allow-lan"),
        )))
    return TableContent(tuple(chains), COUNTERS)


def lan_networks(networks: Iterable[IPNetwork]) -> tuple[list[IPNetwork], list[IPNetwork]]:
    """IPv4 and IPv6 networks of the LAN set: the connected ones plus link-local
    multicast, collapsed (an interval set refuses overlapping elements)."""
    nets = list(networks)
    v4 = ipaddress.collapse_addresses([n for n in nets if n.version == 4] + list(LINK_LOCAL_V4))
    v6 = ipaddress.collapse_addresses([n for n in nets if n.version == 6] + list(LINK_LOCAL_V6))
    return list(v4), list(v6)


def _lan_jumps(policy: LeakRules) -> list[Rule]:
    v4, v6 = lan_networks(policy.lan)
    return [
        Rule((match(payload("ip", "daddr"), one_or_set(prefix(n) for n in v4)), jump(LAN)), "allow-lan"),
        Rule((match(payload("ip6", "daddr"), one_or_set(prefix(n) for n in v6)), jump(LAN)), "allow-lan"),
    ]


def _uplink_upkeep(uplinks: list[str]) -> list[Rule]:
    on = (match(meta("oifname"), one_or_set(uplinks)),) if uplinks else ()
    return [
        Rule(on + (match(meta("nfproto"), "ipv4"), match(payload("udp", "sport"), 68),
                   match(payload("udp", "dport"), 67), ACCEPT), "DHCP"),
        Rule(on + (match(meta("nfproto"), "ipv6"), match(payload("udp", "sport"), 546),
                   match(payload("udp", "dport"), 547), ACCEPT), "DHCPv6"),
        # On every interface: containers and VMs this host routes need its
        # answers too.  These messages never leave their link (RFC 4861
        # makes receivers drop them unless the hop limit is still 255).
        Rule((match(payload("icmpv6", "type"), {"set": list(ND_TYPES)}), ACCEPT),
             "neighbour and router discovery"),
    ]


def _drops(chain: str) -> list[Rule]:
    return [Rule((match(meta("nfproto"), family), counter(DROPPED[chain, family]), DROP), "everything else")
            for family in ("ipv4", "ipv6")]
