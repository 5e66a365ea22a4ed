"""Split tunnelling: leak protection in the same table, teardown, leaves that
empty, cgroups made anew, and who may move whom (real processes of other UIDs)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest

from netcfg.errors import InvalidArgument, NotAuthorized, NotFound
from netcfg.leak.rules import LeakRules
from netcfg.leak.rules import ruleset as leak_ruleset
from netcfg.split.cgroups import Group, Hierarchy
from netcfg.split.placements import Mode
from netcfg.split.rules import ruleset
from support.leaklab import MARK, OUTSIDE4, OUTSIDE6
from support.lines import read_line
from support.netns import assert_no_leaks
from support.splitlab import TUNNEL_SRC, UPLINK_SRC, Answer, cgroup_of, wait_for
from support.users import ensure_users

pytestmark = pytest.mark.asyncio

NOWHERE = Answer(None, None)


async def test_this_machines_hierarchy_is_found():
    """In whichever layout this machine has (tests/unit has both): the
    hierarchy's root and the test's own cgroup are where it says."""
    h = Hierarchy.find()
    assert os.path.isfile(os.path.join(h.dir("/"), "cgroup.procs")), h.mount
    assert os.path.isdir(h.dir(cgroup_of(os.getpid())))
    assert h.nft_path("/a/b").endswith("a/b")  # below /sys/fs/cgroup: nft can name our groups


def nft_tables(ns) -> str:
    return ns.run(["nft", "list", "tables"]).stdout


async def test_leak_protection_on_lets_bypass_out_lockdown_without_permission_does_not(split):
    """Both marks are allowed out by leak protection's output chain, which
    judges by the route a packet had *before* our route chain moved it
    (`meta oif` there is the hook's device); split_guard judges by where it
    really leaves.  Lockdown without the admin's permission: bypass is not
    offered, a placed program's traffic takes the tunnel like any other."""
    split.lab.redirect()
    tunnel = frozenset({split.lab.tunnel_index})
    placed, other = split.prober(), split.prober()
    await split.place(placed, Mode.BYPASS)
    on = LeakRules(tunnels=tunnel, marks=frozenset({MARK, split.marks.bypass, split.marks.vpn_only}))
    await split.install(split.policy(), leak_ruleset(on))
    for dst in (OUTSIDE4, OUTSIDE6):
        assert await placed.probe("tcp", dst) == Answer("router", UPLINK_SRC[6 if ":" in dst else 4])
        assert await other.probe("tcp", dst) == Answer("far", TUNNEL_SRC[6 if ":" in dst else 4])
    lockdown = LeakRules(tunnels=tunnel, marks=frozenset({MARK, split.marks.vpn_only}))
    forbidden = replace(split.policy(), bypass=None)
    await split.table.replace(split.nft, ruleset(forbidden).merge(leak_ruleset(lockdown)))
    for dst in (OUTSIDE4, OUTSIDE6):
        assert await placed.probe("udp", dst) == Answer("far", TUNNEL_SRC[6 if ":" in dst else 4])
        assert await placed.probe("tcp", dst) == Answer("far", TUNNEL_SRC[6 if ":" in dst else 4])
    await split.table.replace(split.nft, ruleset(split.policy(tunnel=False)).merge(leak_ruleset(replace(lockdown, tunnels=frozenset()))))
    assert await placed.probe("udp", OUTSIDE4) == NOWHERE  # no tunnel: lockdown holds
    counters = await split.table.counters(split.nft)
    assert counters["leak_output_ipv4"].packets > 0


def split_content(split):
    return ruleset(split.policy())


async def test_teardown_leaves_nothing_and_puts_programs_back(split):
    client = split.lab.client
    before, tables_before = client.snapshot(), nft_tables(client)
    bypassed, vpn_only = split.prober(), split.prober()
    origins = {p.pid: p.cgroup() for p in (bypassed, vpn_only)}
    split.lab.redirect()
    await split.install(split.policy(include=True))
    await split.place(bypassed, Mode.BYPASS)
    await split.place(vpn_only, Mode.VPN_ONLY)
    child = int(await bypassed.ask("child"))  # born in the leaf, still there at teardown
    assert cgroup_of(child) == bypassed.cgroup() != origins[bypassed.pid]
    assert await split.teardown() == []
    split.lab.unredirect()
    assert split.cgroups_left() == []
    assert {p.pid: p.cgroup() for p in (bypassed, vpn_only)} == origins
    assert cgroup_of(child) == origins[bypassed.pid]
    assert nft_tables(client) == tables_before
    assert_no_leaks(before, client.snapshot())
    assert await bypassed.probe("tcp", OUTSIDE4) == Answer("router", UPLINK_SRC[4])


async def test_a_leaf_goes_when_its_program_exits(split):
    await split.install(split.policy())
    prober = split.prober()
    leaf = await split.place(prober, Mode.BYPASS)
    assert os.path.isdir(split.hierarchy.dir(leaf))
    prober.stop()
    await wait_for(lambda: not os.path.isdir(split.hierarchy.dir(leaf)), what=f"{leaf} removed")
    assert split.placements.leaves == {}
    assert os.path.isdir(split.hierarchy.dir(split.placements.modes[Mode.BYPASS].path))


async def test_a_group_made_anew_is_another_cgroup_to_the_rules(split):
    """nft turns the path into the cgroup's id when the rules are loaded: a
    group removed and made again under the same path is not matched until
    the rules are loaded again (the id is part of SplitRules for that)."""
    split.lab.redirect()
    old = split.policy()
    await split.install(old)
    prober = split.prober()
    bypass = split.placements.modes[Mode.BYPASS]
    split.hierarchy.remove(bypass)
    split.hierarchy.create(bypass)
    split.hierarchy.attach(bypass.path, prober.pid)
    assert await prober.probe("tcp", OUTSIDE4) == Answer("far", TUNNEL_SRC[4])
    new = split.policy()
    assert new.bypass.id != old.bypass.id and new.bypass.path == old.bypass.path and new != old
    await split.table.replace(split.nft, split_content(split))
    assert await prober.probe("tcp", OUTSIDE4) == Answer("router", UPLINK_SRC[4])
    split.hierarchy.release(prober.pid, "/")


async def test_back_to_the_root_when_the_origin_is_gone(split):
    origin = Group(f"{split.base}-origin")
    split.hierarchy.create(origin)
    try:
        prober = split.prober()
        split.hierarchy.attach(origin.path, prober.pid)
        await split.place(prober, Mode.BYPASS)
        split.hierarchy.remove(origin)  # empty now: gone, as a systemd scope would be
        assert await split.place(prober, None) == "/"
        assert prober.cgroup() == "/"
    finally:
        split.hierarchy.remove(origin)


async def test_who_may_move_whom(split):
    users = ensure_users()
    me, other = users.unprivileged, users.openvpn
    mine = split.prober(user=(me.uid, me.gid))
    theirs = split.prober(user=(other.uid, other.gid))
    await split.place(mine, Mode.BYPASS, caller_uid=me.uid)
    await split.place(mine, None, caller_uid=me.uid)
    with pytest.raises(NotAuthorized):
        await split.place(theirs, Mode.BYPASS, caller_uid=me.uid)
    assert theirs.cgroup() == cgroup_of(os.getpid()) or not theirs.cgroup().startswith(split.base)
    # root may move anything; what root placed, the owner may not undo.
    await split.place(mine, Mode.VPN_ONLY, caller_uid=0)
    with pytest.raises(NotAuthorized):
        await split.place(mine, None, caller_uid=me.uid)
    await split.place(mine, None, caller_uid=0)


async def test_a_set_uid_program_is_not_its_users_to_move(split):
    me = ensure_users().unprivileged
    code = f"import os, sys; os.setresuid({me.uid}, 0, 0); print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert read_line(proc, "the set-UID stand-in starting") == "ready"  # real UID the user's, effective root
        with pytest.raises(NotAuthorized):
            await split.placements.place(proc.pid, Mode.BYPASS, me.uid)
    finally:
        proc.kill()
        proc.wait()


async def test_bad_targets_get_clear_errors(split):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)  # reaped: its pid names nobody (or, much later, someone else)
    with pytest.raises(NotFound):
        await split.placements.place(proc.pid, Mode.BYPASS, 0)
    for bad in (0, -1):
        with pytest.raises(InvalidArgument):
            await split.placements.place(bad, Mode.BYPASS, 0)
    with pytest.raises(InvalidArgument, match="kernel thread"):
        await split.placements.place(2, Mode.BYPASS, 0)  # kthreadd
    assert split.placements.leaves == {}
