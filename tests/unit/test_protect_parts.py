"""Pure parts of issue 5: options, the journal's rule kind, uplink choice, the follower."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import sys

import pytest

from netcfg.config import parse
from netcfg.exclude import exclude_routes
from netcfg.errors import NoUplink
from netcfg.kernel.follow import UplinkFollower
from netcfg.kernel.route import Network, Route
from netcfg.kernel.rule import Rule, family_rules
from netcfg.kernel.uplink import Hop, UplinkView, slot_key
from netcfg.kernel.watch import AddressNotice, LinkNotice, Resync, RouteNotice
from netcfg.state import decode_all, encode_all


def test_somark_options(tmp_path):
    o = parse([])
    assert (o.somark_table, o.somark_priority) == (111, 100)
    cfg = tmp_path / "netcfg.yaml"
    cfg.write_text("set_somark: 0x4f56\nsomark_table: 0x1000\nsomark_priority: 50\n")
    o = parse(["--config", str(cfg), "--somark-priority", "60"])
    assert (o.set_somark, o.somark_table, o.somark_priority) == (0x4F56, 4096, 60)


@pytest.mark.parametrize("args, needle", [
    (["--somark-table", "254"], "not 253-255"),
    (["--somark-table", "0"], "table must be"),
    (["--somark-priority", "32766"], "before the main table"),
    (["--somark-priority", "0"], "1-32765"),
])
def test_somark_options_refused(args, needle):
    r = subprocess.run([sys.executable, "-m", "netcfg", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and needle in r.stderr


def test_rule_journal_round_trip():
    rules = family_rules(100, 0x4F56, 70000)
    assert decode_all(encode_all(rules)) == rules
    assert [item["kind"] for item in encode_all(rules)] == ["rule"]
    assert [r.family for r in family_rules(1, 2, 3)] == [socket.AF_INET, socket.AF_INET6]
    assert str(Rule(socket.AF_INET, 100, 0x4F56, 111)) == "IPv4 rule 100: fwmark 0x4f56/0xffffffff lookup 111 proto 111"


def hop(net, gw, oif, metric=0):
    return Hop(ipaddress.ip_network(net), gw, oif, metric)


def test_uplink_view_and_excludes():
    view = UplinkView([hop("0.0.0.0/0", "192.0.2.1", 2, 100), hop("0.0.0.0/0", "192.0.3.1", 3, 50),
                       hop("192.0.2.0/24", None, 2), hop("::/0", "fe80::1", 2)])
    assert view.default(False).gateway == "192.0.3.1"
    assert view.toward("192.0.2.77").gateway is None
    assert view.default(True).gateway == "fe80::1"
    nets = [Network("198.18.5.0", 24, None, False, True), Network("2001:db8:55::", 48, 7, True, True),
            Network("10.0.0.0", 8, None, False, False)]
    assert exclude_routes(nets, view) == [
        Route(socket.AF_INET, "198.18.5.0", 24, 3, "192.0.3.1"),
        Route(socket.AF_INET6, "2001:db8:55::", 48, 2, "fe80::1", 7),
    ]
    v4_only = UplinkView([hop("0.0.0.0/0", "192.0.2.1", 2)])
    with pytest.raises(NoUplink, match="2001:db8:55::/48: no IPv6 uplink"):
        exclude_routes(nets, v4_only)
    assert len(exclude_routes(nets, v4_only, strict=False)) == 1


def test_excludes_already_routed_outside_the_tunnels():
    """An exclude whose very destination the main table routes outside the tunnels gets no route."""
    view = UplinkView([hop("0.0.0.0/0", "192.0.2.1", 2), hop("192.0.2.0/24", None, 2),
                       hop("198.51.100.0/24", "192.0.2.9", 2, 100), hop("2001:db8:ff::/64", None, 2, 256)])
    lan, lan6 = Network("192.0.2.0", 24, None, False, True), Network("2001:db8:ff::", 64, None, True, True)
    wider, other = Network("192.0.0.0", 16, None, False, True), Network("198.51.100.0", 24, 5, False, True)
    assert view.exact("192.0.2.0", 24).gateway is None and view.exact("192.0.2.0", 25) is None
    # The LAN and 198.51.100.0/24 (another metric, still the same destination) are satisfied;
    # the IPv6 LAN too, although there is no IPv6 uplink (so no NoUplink either).
    assert exclude_routes([lan, lan6, wider, other], view) == [Route(socket.AF_INET, "192.0.0.0", 16, 2, "192.0.2.1")]
    # A route we hold already keeps following the uplink.
    assert exclude_routes([lan], view, ours={(False, "192.0.2.0", 24)}) == [
        Route(socket.AF_INET, "192.0.2.0", 24, 2, "192.0.2.1")]


def test_slot_key_ignores_the_next_hop():
    a = Route(socket.AF_INET, "198.51.100.1", 32, 2, "192.0.2.1", 1)
    assert slot_key(a) == slot_key(Route(socket.AF_INET, "198.51.100.1", 32, 3, "192.0.3.1", 1))
    assert slot_key(a) != slot_key(Route(socket.AF_INET, "198.51.100.1", 32, 2, "192.0.2.1", 2))


class FakeWatch:
    def __init__(self):
        self.listeners = []

    def subscribe(self, listener):
        self.listeners.append(listener)


def notice(**kw):
    base = dict(added=True, ipv6=False, dst="0.0.0.0", prefix=0, oif=2, gateway="192.0.2.1", metric=None,
                table=254, proto=4)
    return RouteNotice(**{**base, **kw})


def test_follower_counts_only_uplink_changes():
    follower = UplinkFollower(FakeWatch(), lambda: {9}, None)
    assert follower.relevant(notice())
    assert not follower.relevant(notice(proto=111))  # our own routes
    assert not follower.relevant(notice(table=111))  # not the main table
    assert not follower.relevant(notice(oif=9))  # on one of our tunnels
    assert follower.relevant(LinkNotice(False, 2, "uplink0"))
    assert not follower.relevant(LinkNotice(True, 9, "tun0"))
    assert follower.relevant(Resync())
    assert not follower.relevant(AddressNotice(True, 2, "192.0.2.2", 24, False))


@pytest.mark.asyncio
async def test_follower_debounces_a_burst():
    runs = []

    async def recompute():
        runs.append(1)
        if len(runs) == 1:
            watch.listeners[0](notice())  # a change while recomputing: one more run
        await asyncio.sleep(0)

    watch = FakeWatch()
    follower = UplinkFollower(watch, lambda: set(), recompute, delay=0.01)
    for _ in range(50):
        watch.listeners[0](notice())
    watch.listeners[0](notice(proto=111))
    await follower.settle()  # the barrier: returns once the rounds the burst started are over
    assert len(runs) == 2
    await follower.stop()


@pytest.mark.asyncio
async def test_follower_ignores_a_tunnel_known_as_ours_by_the_time_it_fires():
    # Establish's tun announces itself before Establish knows its ifindex.
    runs, tunnels = [], set()

    async def recompute():
        runs.append(1)

    watch = FakeWatch()
    follower = UplinkFollower(watch, lambda: set(tunnels), recompute, delay=0.01)
    watch.listeners[0](LinkNotice(True, 9, "tun0"))
    tunnels.add(9)  # Establish looked it up
    await follower.settle()
    assert runs == []
    watch.listeners[0](LinkNotice(True, 9, "tun0"))  # ours: ignored on arrival
    watch.listeners[0](LinkNotice(False, 2, "uplink0"))  # not ours: one recompute
    await follower.settle()
    assert runs == [1]
    await follower.stop()
