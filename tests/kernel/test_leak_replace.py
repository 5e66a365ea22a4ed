"""Replacing the rules has no window: a continuous stream of probes across
hundreds of replaces never gets out where it should not, and the tunnel is
never blocked (real traffic, support/leaklab.py)."""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass

import pytest

from netcfg.leak.rules import LeakRules
from support.leaklab import MARK, OUTSIDE4, OUTSIDE6, TUN4, TUN6, TUNNEL_IF
from support.nsenter import in_netns

pytestmark = pytest.mark.asyncio

REPLACES = 300
TUNNELED4, TUNNELED6 = "198.18.0.1", "2001:db8:18::1"  # on the far end, routed into vpn0
SPORT = {OUTSIDE4: 31001, OUTSIDE6: 31002, TUNNELED4: 31003, TUNNELED6: 31004}


@dataclass
class Stream:
    """One UDP socket per destination, sending in turn until stopped."""

    sent: dict
    refused: dict
    stop: threading.Event

    def run(self, sockets: dict) -> None:
        while not self.stop.is_set():
            for dst, sock in sockets.items():
                try:
                    sock.sendto(b"stream", (dst, 9))
                    self.sent[dst] += 1
                except PermissionError:
                    self.refused[dst] += 1


def open_sockets() -> dict:
    out = {}
    for dst, sport in SPORT.items():
        family = socket.AF_INET6 if ":" in dst else socket.AF_INET
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
        out[dst] = s
    return out


async def test_no_probe_passes_during_replaces(lab, leak_table):
    lab.far.ip("addr", "add", f"{TUNNELED4}/32", "dev", "lo")
    lab.far.ip("addr", "add", f"{TUNNELED6}/128", "dev", "lo")
    lab.client.ip("route", "add", TUNNELED4, "via", TUN4[1], "dev", TUNNEL_IF)
    lab.client.ip("route", "add", TUNNELED6, "via", TUN6[1], "dev", TUNNEL_IF)
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
    lab._seen()  # the witnesses answer
    for ns in (lab.router, lab.far):
        ns.run(["nft", "flush", "set", "inet", "witness", "seen"])

    sockets = in_netns(lab.client.name, open_sockets)
    stream = Stream({d: 0 for d in SPORT}, {d: 0 for d in SPORT}, threading.Event())
    sender = threading.Thread(target=stream.run, args=(sockets,))
    sender.start()
    overlapped = 0  # replaces during which the stream sent something
    try:
        for i in range(REPLACES):
            before = sum(stream.refused.values())
            await leak_table.apply(variants[i % len(variants)])
            overlapped += sum(stream.refused.values()) > before
    finally:
        stream.stop.set()
        sender.join()
        for s in sockets.values():
            s.close()

    seen = lab._seen()
    report = (f"sent {stream.sent}, refused {stream.refused}, arrived {seen}, "
              f"{overlapped} of {REPLACES} replaces overlapped by the stream")
    print(report)
    assert stream.sent[OUTSIDE4] == stream.sent[OUTSIDE6] == 0, report
    assert ("udp", SPORT[OUTSIDE4]) not in seen and ("udp", SPORT[OUTSIDE6]) not in seen, report
    assert stream.refused[TUNNELED4] == stream.refused[TUNNELED6] == 0, report
    assert seen.get(("udp", SPORT[TUNNELED4])) == seen.get(("udp", SPORT[TUNNELED6])) == "far", report
    # The stream really ran across the replaces, not before or after them.
    assert overlapped > REPLACES // 10, report
    dropped = await leak_table.counters()
    assert dropped["leak_output_ipv4"].packets >= stream.refused[OUTSIDE4], report
