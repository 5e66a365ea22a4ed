"""Split tunnelling's pure parts: finding the hierarchy, the planner's
bounds, and the text form of a batch (the kernel checks it in tests/kernel)."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, strategies as st

from netcfg.kernel.nftscript import expression, script
from netcfg.kernel.nftspec import Present, replace_commands
from netcfg.kernel.uplink import Hop, UplinkView
from netcfg.leak.rules import LeakRules
from netcfg.leak.rules import ruleset as leak_ruleset
from netcfg.split import routing
from netcfg.split.cgroups import CgroupsUnavailable, Hierarchy, cgroup2_mount, cgroup_in, default_base
from netcfg.split.placements import CgroupMatch
from netcfg.split.rules import SplitRules, ruleset

# /proc/self/mountinfo as the two layouts write it (optional fields and all).
# Hybrid: this build machine (no systemd; cgroup2 at /sys/fs/cgroup/unified
# beside the v1 controllers), as older systemd mounts it too.
HYBRID = """\
25 1 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# Unified: a fresh Debian 12 (systemd 252), as CI's machines may be.
UNIFIED = """\
22 27 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""


@pytest.mark.parametrize("mountinfo, mount, nft_path", [
    (HYBRID, "/sys/fs/cgroup/unified", "unified/netcfg/bypass"),
    (UNIFIED, "/sys/fs/cgroup", "netcfg/bypass"),
], ids=["hybrid", "unified"])
def test_the_hierarchy_is_found_in_both_layouts(mountinfo, mount, nft_path):
    h = Hierarchy.find(mountinfo)
    assert h.mount == mount
    assert h.dir("/") == mount and h.dir("/netcfg/bypass") == f"{mount}/netcfg/bypass"
    assert h.nft_path("/netcfg/bypass") == nft_path
    assert Hierarchy.level("/netcfg/bypass") == 2  # the depth in the hierarchy, whatever the mount


def test_which_cgroup2_mount_counts():
    elsewhere = "99 1 0:40 / /mnt/cg rw - cgroup2 none rw\n"
    assert cgroup2_mount(elsewhere + UNIFIED) == "/sys/fs/cgroup"  # the one nft can name
    assert cgroup2_mount(elsewhere) == "/mnt/cg"
    with pytest.raises(CgroupsUnavailable, match="only below /sys/fs/cgroup"):
        Hierarchy.find(elsewhere).nft_path("/netcfg/bypass")
    subtree = "50 25 0:23 /user.slice /srv/cg rw shared:9 - cgroup2 cgroup2 rw\n"
    assert cgroup2_mount(subtree) is None  # a bind mount of a subtree is not the hierarchy
    assert cgroup2_mount("99 1 0:40 / /mnt/c\\040g rw - cgroup2 none rw\n") == "/mnt/c g"
    v1_only = HYBRID.replace("cgroup2 cgroup2", "cgroup cgroup")
    assert cgroup2_mount(v1_only) is None
    with pytest.raises(CgroupsUnavailable, match="no cgroup v2 hierarchy"):
        Hierarchy.find(v1_only)


def test_paths_nft_names_and_levels():
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
