"""Split tunnelling against real traffic (no service: the modules are driven directly).

support/splitlab.py: the leak lab's namespaces with a veth "tunnel", a
cgroup v2 subtree the test makes, prober processes placed in it.  Every
answer says where the probe arrived ("router": by the uplink, "far":
through the tunnel) and which source address the far side saw; getting an
answer at all proves the replies found their way back.
"""

from __future__ import annotations

import pytest

from netcfg.split.placements import Mode
from support.splitlab import PROBES, TUNNEL_SRC, UPLINK_SRC, Answer, version

pytestmark = pytest.mark.asyncio


def by_uplink(dst: str) -> Answer:
    return Answer("router", UPLINK_SRC[version(dst)])


def by_tunnel(dst: str) -> Answer:
    return Answer("far", TUNNEL_SRC[version(dst)])


NOWHERE = Answer(None, None)


async def paths(prober, fork: bool = False) -> dict[tuple[str, str], Answer]:
    return {(proto, dst): await prober.probe(proto, dst, fork=fork) for proto, dst in PROBES}


def want(expected) -> dict[tuple[str, str], Answer]:
    return {(proto, dst): expected(dst) for proto, dst in PROBES}


async def test_exclude_mode_bypassed_program_uses_the_uplink_with_its_address(split):
    split.lab.redirect()  # the VPN takes the default route
    await split.install(split.policy())
    placed, other = split.prober(), split.prober()
    await split.place(placed, Mode.BYPASS)
    assert await paths(placed) == want(by_uplink)
    assert await paths(other) == want(by_tunnel)


async def test_include_mode_only_the_vpn_only_program_uses_the_tunnel(split):
    split.lab.redirect()  # redirected, and still everything else keeps the uplink
    await split.install(split.policy(include=True))
    placed, other = split.prober(), split.prober()
    await split.place(placed, Mode.VPN_ONLY)
    assert await paths(placed) == want(by_tunnel)
    assert await paths(other) == want(by_uplink)


async def test_vpn_only_program_uses_the_tunnel_even_without_redirect(split):
    await split.install(split.policy())
    placed, other = split.prober(), split.prober()
    await split.place(placed, Mode.VPN_ONLY)
    assert await paths(placed) == want(by_tunnel)
    assert await paths(other) == want(by_uplink)


async def test_vpn_only_program_has_no_way_out_without_a_tunnel(split):
    await split.install(split.policy(tunnel=False))
    placed = split.prober()
    await split.place(placed, Mode.VPN_ONLY)
    assert await paths(placed) == want(lambda dst: NOWHERE)
    counters = await split.table.counters(split.nft)
    assert counters["split_vpn_only_outside"].packets > 0


async def test_a_forked_child_keeps_its_mode(split):
    split.lab.redirect()
    await split.install(split.policy())
    placed = split.prober()
    await split.place(placed, Mode.BYPASS)
    assert await paths(placed, fork=True) == want(by_uplink)


async def test_a_moved_program_changes_path_for_new_connections(split):
    split.lab.redirect()
    await split.install(split.policy())
    prober = split.prober()
    before = prober.cgroup()
    assert await prober.probe("tcp", "203.0.113.7") == by_tunnel("203.0.113.7")
    await split.place(prober, Mode.BYPASS)
    assert await paths(prober) == want(by_uplink)
    await split.place(prober, Mode.VPN_ONLY)
    assert await paths(prober) == want(by_tunnel)
    await split.place(prober, None)
    assert prober.cgroup() == before  # back where it came from
    assert await paths(prober) == want(by_tunnel)


async def test_bypassed_dns_goes_to_the_uplink_resolver_not_the_tunnels(split):
    import ipaddress

    from support.leaklab import LAN4, LAN6, TUN4, TUN6

    split.lab.redirect()
    await split.install(split.policy(tunnel_dns=(ipaddress.ip_address(TUN4[1]), ipaddress.ip_address(TUN6[1])),
                                     uplink_dns=(ipaddress.ip_address(LAN4), ipaddress.ip_address(LAN6))))
    placed, other = split.prober(), split.prober()
    await split.place(placed, Mode.BYPASS)
    for resolver in (TUN4[1], TUN6[1]):  # what resolv.conf names while the VPN is up
        assert await placed.probe("udp", resolver, 53) == by_uplink(resolver)  # answered by the router
        assert await other.probe("udp", resolver, 53) == by_tunnel(resolver)


async def test_bypassed_dns_is_dropped_when_the_uplink_has_no_resolver(split):
    import ipaddress

    from support.leaklab import TUN4

    split.lab.redirect()
    await split.install(split.policy(tunnel_dns=(ipaddress.ip_address(TUN4[1]),)))
    placed = split.prober()
    await split.place(placed, Mode.BYPASS)
    assert await placed.probe("udp", TUN4[1], 53) == NOWHERE


async def test_strict_reverse_path_filter_needs_src_valid_mark(split):
    """Replies to a bypassed program arrive on the uplink for the tunnel's
    address: strict rp_filter drops them unless it may use the mark, which
    split_replies puts back on them (docs/split-tunnel.md, limits)."""
    client = split.lab.client
    split.lab.redirect()
    await split.install(split.policy())
    placed = split.prober()
    await split.place(placed, Mode.BYPASS)
    for key in ("all", "uplink0"):
        client.sysctl(f"net.ipv4.conf.{key}.rp_filter", "1")
    assert await placed.probe("udp", "203.0.113.7") == NOWHERE
    client.sysctl("net.ipv4.conf.uplink0.src_valid_mark", "1")
    assert await placed.probe("udp", "203.0.113.7") == by_uplink("203.0.113.7")
    assert await placed.probe("tcp", "203.0.113.7") == by_uplink("203.0.113.7")
