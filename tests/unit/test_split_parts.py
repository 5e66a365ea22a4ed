"""Split tunnelling's pure parts: finding the hierarchy, the planner's
bounds, and the text form of a batch (the kernel checks it in tests/kernel)."""

from __future__ import annotations

import ipaddress
import socket

from hypothesis import given, strategies as st

from netcfg.kernel.nftscript import expression, script
from netcfg.kernel.nftspec import Present, replace_commands
from netcfg.kernel.uplink import Hop, UplinkView
from netcfg.leak.rules import LeakRules
from netcfg.leak.rules import ruleset as leak_ruleset
from netcfg.split import routing
from netcfg.split.cgroups import Hierarchy, cgroup2_mount, cgroup_in, default_base
from netcfg.split.placements import CgroupMatch
from netcfg.split.rules import SplitRules, ruleset

HYBRID = """\
25 1 0:23 / /sys rw - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
"""
UNIFIED = "40 1 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_the_hierarchy_is_found_in_mountinfo():
    assert cgroup2_mount(HYBRID) == "/sys/fs/cgroup/unified"
    assert cgroup2_mount(UNIFIED) == "/sys/fs/cgroup"
    assert cgroup2_mount("99 1 0:40 / /mnt/cg rw - cgroup2 none rw\n" + UNIFIED) == "/sys/fs/cgroup"
    assert cgroup2_mount(HYBRID.replace("cgroup2 cgroup2", "cgroup cgroup")) is None


def test_paths_nft_names_and_levels():
    h = Hierarchy("/sys/fs/cgroup/unified")
    assert h.nft_path("/netcfg/bypass") == "unified/netcfg/bypass"
    assert Hierarchy.level("/netcfg/bypass") == 2
    assert Hierarchy.level("/system.slice/netcfg.service/bypass") == 3
    assert cgroup_in("1:name=systemd:/\n0::/user.slice/session-2.scope\n") == "/user.slice/session-2.scope"
    assert default_base(True, "/system.slice/netcfg.service") == "/system.slice/netcfg.service"
    assert default_base(False, "/system.slice/netcfg.service") == "/netcfg"
    assert default_base(True, "/") == "/netcfg"


GROUP = st.builds(CgroupMatch, st.integers(1, 5), st.sampled_from(["unified/a/bypass", "b/vpn-only"]),
                  st.integers(1, 2**40))
ADDR = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@given(bypass=st.none() | GROUP, vpn_only=st.none() | GROUP, include=st.booleans(),
       tunnels=st.frozensets(st.integers(2, 10**6), max_size=50),
       tunnel_dns=st.lists(ADDR, max_size=20), uplink_dns=st.lists(ADDR, max_size=20))
def test_the_rules_never_grow_and_always_have_a_text_form(bypass, vpn_only, include, tunnels, tunnel_dns, uplink_dns):
    policy = SplitRules(bypass, vpn_only, include, tunnels, tunnel_dns=tuple(tunnel_dns), uplink_dns=tuple(uplink_dns))
    content = ruleset(policy)
    assert content.rule_count() <= 13
    assert all(c.name.startswith("split_") for c in content.chains)
    whole = content.merge(leak_ruleset(LeakRules(tunnels=tunnels)))  # one table, no name shared
    assert script(replace_commands("inet", "netcfg", whole, Present())).count("\n") > 0


def test_the_cgroup_match_exists_only_in_nfts_language():
    match = {"match": {"op": "==", "left": {"socket": {"key": "cgroupv2", "level": 2}}, "right": "unified/n/bypass"}}
    assert expression(match) == 'socket cgroupv2 level 2 "unified/n/bypass"'
    assert expression({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}) \
        == 'ct state "established","related"'


def test_routing_is_fixed_size_whatever_the_vpn_pushed():
    tables = routing.SplitTables()
    assert len(routing.policy_rules(tables, SplitRules().marks, include=False)) == 4
    assert len(routing.policy_rules(tables, SplitRules().marks, include=True)) == 6
    uplink = [Hop(ipaddress.ip_network("0.0.0.0/0"), "192.0.2.1", 3), Hop(ipaddress.ip_network("192.0.2.0/24"), None, 3),
              Hop(ipaddress.ip_network("::/0"), "2001:db8::1", 3, 1024), Hop(ipaddress.ip_network("fe80::/64"), None, 3, 256),
              Hop(ipaddress.ip_network("fe80::/64"), None, 4, 256)]  # a twin on another link: one copy
    routes = routing.bypass_routes(tables, UplinkView(uplink))
    assert len(routes) == 4 and {r.table for r in routes} == {tables.bypass}
    assert [(r.family, r.dst) for r in routing.vpn_routes(tables, 7)] == [(socket.AF_INET, "0.0.0.0"),
                                                                          (socket.AF_INET6, "::")]
    assert routing.vpn_routes(tables, None) == []
