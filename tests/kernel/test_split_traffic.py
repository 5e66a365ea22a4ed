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
