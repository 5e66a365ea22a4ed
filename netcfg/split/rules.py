"""Split tunnelling's chains in the shared `inet netcfg` table (pure planner).

`SplitRules` is the whole input; `ruleset()` returns the chains as a
`TableContent` (kernel/nftspec.py), merged with leak protection's into one
table and installed in one transaction (`TableContent.merge`; the names
here start with `split_`, leak protection's with `leak_`).

How a placed program's packets find their way (docs/split-tunnel.md):

1. `split_route` (type route, output, mangle -150): a socket whose cgroup
   lies below the bypass (vpn-only) group gets the bypass (vpn-only) mark
   on its packets, and its connection the same conntrack mark.  A type
   route chain makes the kernel route a packet again when the chain
   changed its mark; the policy rules of netcfg/split/routing.py then send
   the mark to its table.  Packets without a socket of their own (a TCP
   reset in TIME-WAIT) take the mark back from their connection.  A
   packet that already carries a mark (SO_MARK: ProtectSocket's, another
   VPN's) keeps it: `meta mark 0` first.
2. `split_replies` (filter, prerouting, mangle): replies take their
   connection's mark, so that strict reverse-path filtering, with
   `src_valid_mark`, checks them against the table they were sent by.
3. `split_dns` (nat, output, dstnat -100): a bypassed program's DNS query
   to the tunnel's resolver goes to the uplink's resolver instead (dropped
   when the uplink has none of that family): its lookups never reach the
   tunnel's resolver.  In include mode, every unplaced program's too.
4. `split_guard` (filter, postrouting, 0): what must never happen, even
   when a table has no route: bypass packets into a tunnel, vpn-only
   packets anywhere but a tunnel (or loopback), and in include mode
   unplaced packets into a tunnel (neighbour discovery excepted).  Each
   is a counted drop.
5. `split_nat` (nat, postrouting, srcnat 100): the socket chose its source
   address by the route it saw before the mark changed it, so a bypassed
   packet leaving by the uplink carries the tunnel's address and a
   vpn-only one entering the tunnel may carry the uplink's.  Masquerade
   gives each the address of the interface it leaves by, so replies come
   back and the VPN server accepts it; conntrack undoes it on replies.

Nothing here depends on routes: the rule count is at most 13 whatever
the number of routes, tunnels, programs or resolvers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..kernel.nftspec import ACCEPT, DROP, Chain, Hook, Rule, TableContent, counter, match, meta, one_or_set, payload
from ..leak.rules import ND_TYPES
from .placements import CgroupMatch

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

ROUTE, REPLIES, DNS, GUARD, NAT = "split_route", "split_replies", "split_dns", "split_guard", "split_nat"
GUARD_COUNTERS = {"bypass": "split_bypass_into_tunnel", "vpn-only": "split_vpn_only_outside",
                  "include": "split_unplaced_into_tunnel"}
LOOPBACK_IFINDEX = 1  # lo is always interface 1
MANGLE, DSTNAT, FILTER, SRCNAT = -150, -100, 0, 100
DNS_PORT = 53


@dataclass(frozen=True)
class SplitMarks:
    bypass: int = 0x4F42  # "OB"
    vpn_only: int = 0x4F54  # "OT"


@dataclass(frozen=True)
class SplitRules:
    """Everything the chains depend on."""

    # The groups to match (None: that mode is not offered: its programs are
    # routed like any other, e.g. bypass while lockdown forbids it).  A
    # group's id is part of the value: a group made anew needs the rules
    # loaded anew.
    bypass: CgroupMatch | None = None
    vpn_only: CgroupMatch | None = None
    include: bool = False  # unplaced programs keep the uplink (routing.py) and never enter a tunnel
    tunnels: frozenset[int] = frozenset()  # ifindexes of netcfg's tunnels
    marks: SplitMarks = SplitMarks()
    tunnel_dns: tuple[IP, ...] = ()  # the resolvers the tunnels' DNS settings name
    uplink_dns: tuple[IP, ...] = ()  # the resolvers of the uplink (what the host used before)


def ruleset(policy: SplitRules) -> TableContent:
    """The split-tunnelling chains for `policy` (pure)."""
    m = policy.marks
    unmarked = match(meta("mark"), 0)
    placed = [(g, mark, name) for g, mark, name in ((policy.bypass, m.bypass, "bypass"),
                                                     (policy.vpn_only, m.vpn_only, "vpn-only")) if g]
    if not placed:
        return TableContent()
    ours = one_or_set([mark for _, mark, _ in placed])
    route = [Rule((unmarked, match({"ct": {"key": "mark"}}, ours), _set_mark({"ct": {"key": "mark"}})),
                  "packets of placed programs' connections")]
    route += [Rule((unmarked, _in_cgroup(group), _set_mark(mark), _set_ct_mark(mark)), f"{name} programs")
              for group, mark, name in placed]
    replies = [Rule((unmarked, match({"ct": {"key": "mark"}}, ours), _set_mark({"ct": {"key": "mark"}})),
                    "replies to placed programs")]
    chains = [
        Chain(ROUTE, tuple(route), Hook("route", "output", MANGLE)),
        Chain(REPLIES, tuple(replies), Hook("filter", "prerouting", MANGLE)),
    ]
    dns = _dns(policy)
    if dns:
        chains.append(Chain(DNS, tuple(dns), Hook("nat", "output", DSTNAT)))
    chains.append(Chain(GUARD, tuple(_guard(policy)), Hook("filter", "postrouting", FILTER)))
    chains.append(Chain(NAT, tuple(_nat(policy)), Hook("nat", "postrouting", SRCNAT)))
    return TableContent(tuple(chains), tuple(GUARD_COUNTERS.values()))


def _guard(policy: SplitRules) -> list[Rule]:
    m, tunnels = policy.marks, sorted(policy.tunnels)
    rules = []
    if tunnels and policy.bypass:
        rules.append(Rule((match(meta("mark"), m.bypass), match(meta("oif"), one_or_set(tunnels)),
                           counter(GUARD_COUNTERS["bypass"]), DROP), "bypass programs never use a tunnel"))
    rules.append(Rule((match(meta("mark"), m.vpn_only),
                       match(meta("oif"), one_or_set([LOOPBACK_IFINDEX] + tunnels), "!="),
                       counter(GUARD_COUNTERS["vpn-only"]), DROP), "vpn-only programs use nothing but a tunnel"))
    if policy.include and tunnels:
        # The kernel's own neighbour discovery carries no mark either; a tun
        # has none, but a tap or veth tunnel needs it to reach its peer.
        rules.append(Rule((match(payload("icmpv6", "type"), {"set": list(ND_TYPES)}), ACCEPT),
                          "neighbour and router discovery"))
        rules.append(Rule((match(meta("mark"), 0), match(meta("oif"), one_or_set(tunnels)),
                           counter(GUARD_COUNTERS["include"]), DROP), "include mode: unplaced programs keep out"))
    return rules


def _nat(policy: SplitRules) -> list[Rule]:
    m, tunnels = policy.marks, sorted(policy.tunnels)
    rules = [Rule((match(meta("mark"), m.bypass), match(meta("oif"), LOOPBACK_IFINDEX, "!="), {"masquerade": None}),
                  "bypass programs: the uplink's address")]
    if tunnels:
        rules.append(Rule((match(meta("mark"), m.vpn_only), match(meta("oif"), one_or_set(tunnels)),
                           {"masquerade": None}), "vpn-only programs: the tunnel's address"))
    return rules


def _dns(policy: SplitRules) -> list[Rule]:
    m = policy.marks
    who = match(meta("mark"), m.vpn_only, "!=") if policy.include else match(meta("mark"), m.bypass)
    rules = []
    for version, family in ((4, "ip"), (6, "ip6")):
        theirs = sorted({a for a in policy.tunnel_dns if a.version == version})
        uplink = [a for a in policy.uplink_dns if a.version == version]
        if not theirs:
            continue
        query = (who, match(payload(family, "daddr"), one_or_set(map(str, theirs))),
                 match(meta("l4proto"), {"set": ["tcp", "udp"]}), match(payload("th", "dport"), DNS_PORT))
        if uplink:
            rules.append(Rule(query + ({"dnat": {"family": family, "addr": str(uplink[0])}},),
                              "DNS: the uplink's resolver, not the tunnel's"))
        else:
            rules.append(Rule(query + (DROP,), "DNS: never the tunnel's resolver (the uplink has none)"))
    return rules


def _in_cgroup(group: CgroupMatch) -> dict:
    # The path is resolved by nft to the group's id when the rule is loaded
    # (kernel/nftscript.py: this expression exists only in nft's language).
    return match({"socket": {"key": "cgroupv2", "level": group.level}}, group.path)


def _set_mark(value) -> dict:
    return {"mangle": {"key": meta("mark"), "value": value}}


def _set_ct_mark(value) -> dict:
    return {"mangle": {"key": {"ct": {"key": "mark"}}, "value": value}}

