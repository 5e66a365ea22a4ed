"""Replacing the rules has no window: a continuous stream of probes across
hundreds of replaces never gets out where it should not, and the tunnel is
never blocked (real traffic, support/leaklab.py)."""

from __future__ import annotations

import ipaddress

import pytest

from netcfg.leak.rules import LeakRules
from support.leaklab import MARK, OUTSIDE4, OUTSIDE6, TUN4, TUN6, TUNNEL_IF, ProbeStream

pytestmark = pytest.mark.asyncio

REPLACES = 300
TUNNELED4, TUNNELED6 = "198.18.0.1", "2001:db8:18::1"  # on the far end, routed into vpn0
STREAM = {OUTSIDE4: 31001, OUTSIDE6: 31002, TUNNELED4: 31003, TUNNELED6: 31004}


def route_into_tunnel(lab) -> None:
    lab.far.ip("addr", "add", f"{TUNNELED4}/32", "dev", "lo")
    lab.far.ip("addr", "add", f"{TUNNELED6}/128", "dev", "lo")
    lab.client.ip("route", "add", TUNNELED4, "via", TUN4[1], "dev", TUNNEL_IF)
    lab.client.ip("route", "add", TUNNELED6, "via", TUN6[1], "dev", TUNNEL_IF)


async def test_no_probe_passes_during_replaces(lab, leak_table):
    route_into_tunnel(lab)
    tunnel = lab.tunnel_index
    lan = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8:ff::/64"))
    # Every policy keeps the tunnel open and the uplink closed to OUTSIDE;
    # they differ in everything else, so each replace rewrites every chain.
    variants = [
        LeakRules(tunnels=frozenset({tunnel}), marks=frozenset({MARK}), uplinks=frozenset({"uplink0"})),
        LeakRules(tunnels=frozenset({tunnel, 4000}), allow_lan=True, lan=lan),
        LeakRules(tunnels=frozenset({tunnel}), marks=frozenset({MARK, MARK + 1}), allow_lan=True),
        LeakRules(tunnels=frozenset({tunnel, 4001, 4002})),
    ]
    await leak_table.apply(variants[0])
    lab.clear_witnesses()
    overlapped = 0  # replaces during which the stream sent something
    with ProbeStream(lab, STREAM) as stream:
        for i in range(REPLACES):
            before = stream.total()
            await leak_table.apply(variants[i % len(variants)])
            overlapped += stream.total() > before
    report = f"{stream}, {overlapped} of {REPLACES} replaces overlapped by the stream"
    print(report)
    assert stream.sent[OUTSIDE4] == stream.sent[OUTSIDE6] == 0, report
    assert stream.refused[TUNNELED4] == stream.refused[TUNNELED6] == 0, report
    assert stream.arrived() == {OUTSIDE4: None, OUTSIDE6: None, TUNNELED4: "far", TUNNELED6: "far"}, report
    # The stream really ran across the replaces, not before or after them.
    assert overlapped > REPLACES // 10, report
    dropped = await leak_table.counters()
    assert dropped["leak_output_ipv4"].packets >= stream.refused[OUTSIDE4], report
