"""The leak guard (netcfg/leak/guard.py) driving the real table in a
namespace, as the registry will: tunnels up and down, grace, holds, a
restart over a table a crashed run left, shutdown per mode."""

from __future__ import annotations

import subprocess

import pytest
import pytest_asyncio
from pyroute2 import AsyncIPRoute

from netcfg.errors import KernelRefused
from netcfg.kernel.libnft import Nft
from netcfg.leak import lan
from netcfg.leak.guard import LeakGuard, LeakSettings
from netcfg.leak.switch import Mode, State, Tunnel
from support.leaklab import LAN4, LAN_SERVICE_PORT, OUTSIDE4, OUTSIDE6, ProbeStream, both
from support.lifecycle import wait_until
from support.nsenter import enter

pytestmark = pytest.mark.asyncio

OWNER = ":1.42"


@pytest_asyncio.fixture
async def guards(netns):
    """make(mode, **settings) -> a started LeakGuard in `netns`; all shut down (or abandoned) after."""
    made, ipr = [], AsyncIPRoute(netns=netns.name)

    async def make(mode: Mode, start: bool = True, **kw) -> LeakGuard:
        events = []
        guard = LeakGuard(LeakSettings(mode, **kw), Nft(thread_init=lambda: enter(netns.name)),
                          lambda tunnels: lan.dump(ipr, set(tunnels)), lambda *e: events.append(e))
        guard.events = events
        made.append(guard)
        if start:
            await guard.start()
        return guard

    yield make
    for guard in made:
        guard.nft.close()
    ipr.close()


def tunnel(lab, redirects: bool = True) -> Tunnel:
    return Tunnel("/net/openvpn/v3/netcfg/dev0", "vpn0", lab.tunnel_index, OWNER, redirects)


async def test_on_follows_tunnels_and_ends_after_the_grace(lab, leak_table, guards):
    guard = await guards(Mode.ON, grace=0.5)
    assert leak_table.listing() == ""
    await guard.established(tunnel(lab), pid=1234)
    assert 'oif "vpn0" accept' in leak_table.listing()
    assert guard.events[-1][0] is State.ACTIVE
    await guard.torn_down(tunnel(lab).device, deliberate=True)
    listing = leak_table.listing()
    assert "chain leak_output" in listing and "vpn0" not in listing  # grace: closed, no tunnel
    await wait_until(lambda: leak_table.listing() == "", what="the grace to end")
    assert [e[0] for e in guard.events] == [State.OFF, State.ACTIVE, State.ACTIVE, State.OFF]  # start, up, grace, end


async def test_a_vanished_client_holds_until_released(lab, leak_table, guards):
    guard = await guards(Mode.ON, grace=0.1)
    await guard.established(tunnel(lab), pid=1234)
    await guard.torn_down(tunnel(lab).device, deliberate=False)
    await guard.owner_gone(OWNER)
    state, reason, counters = await guard.status()
    assert state is State.HELD and "(pid 1234) vanished without Destroy" in reason
    assert set(counters) >= {"leak_output_ipv4", "leak_output_ipv6"}
    await lab.check({p: None for p in both(OUTSIDE4, OUTSIDE6, LAN_SERVICE_PORT)})
    assert await guard.release()
    assert leak_table.listing() == "" and (await guard.status())[0] is State.OFF


async def test_a_restart_takes_the_table_over_with_no_window(lab, leak_table, guards):
    """A crashed run's table (its guard never shut down) is taken over by
    the next start: a probe stream across the takeover never gets out."""
    crashed = await guards(Mode.ON)
    await crashed.established(tunnel(lab), pid=1234)
    crashed.nft.close()  # the process is gone; the table stays
    lab.clear_witnesses()
    with ProbeStream(lab, {OUTSIDE4: 32001, OUTSIDE6: 32002}) as stream:
        restarted = await guards(Mode.ON)
    assert stream.sent == {OUTSIDE4: 0, OUTSIDE6: 0} and stream.arrived() == {OUTSIDE4: None, OUTSIDE6: None}, stream
    state, reason, _ = await restarted.status()
    assert state is State.HELD and "restarted" in reason
    assert "vpn0" not in leak_table.listing()  # the old run's tunnel is not trusted
    await restarted.established(tunnel(lab), pid=99)
    assert (await restarted.status())[0] is State.ACTIVE


async def test_shutdown_removes_in_on_and_keeps_in_lockdown(lab, leak_table, guards):
    on = await guards(Mode.ON)
    await on.established(tunnel(lab), pid=1)
    await on.shutdown()
    assert leak_table.listing() == ""
    locked = await guards(Mode.LOCKDOWN)
    assert (await locked.status())[0] is State.LOCKDOWN and "chain leak_output" in leak_table.listing()
    await locked.established(tunnel(lab), pid=1)
    await locked.torn_down(tunnel(lab).device, deliberate=True)
    await locked.shutdown()
    assert "chain leak_output" in leak_table.listing()
    # The way out: leak-protection off, and start again.
    await guards(Mode.OFF)
    assert leak_table.listing() == ""


async def test_allow_lan_uses_the_connected_networks(lab, leak_table, guards):
    guard = await guards(Mode.LOCKDOWN, allow_lan=True)
    listing = leak_table.listing()
    assert "192.0.2.0/24" in listing and "2001:db8:ff::/64" in listing  # uplink0's networks
    assert "10.8.0.0/24" in listing  # vpn0 is not a netcfg tunnel yet: a LAN
    await guard.established(tunnel(lab), pid=1)
    assert "10.8.0.0/24" not in leak_table.listing()
    await lab.check({**{p: "router" for p in both(LAN4, "2001:db8:ff::1", LAN_SERVICE_PORT)},
                     **{p: None for p in both(LAN4, "2001:db8:ff::1", 53)}})


async def test_a_refused_change_fails_establish_and_records_nothing(lab, leak_table, guards):
    """Another process owns a table of our name (`flags owner`): the kernel
    refuses our changes (EPERM; libnftables 1.0.6 cannot even list such a
    table as JSON), Establish must hear it, and the switch must not count
    the tunnel."""
    guard = await guards(Mode.ON)
    squatter = lab.client.popen(["nft", "-i"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        squatter.stdin.write("add table inet netcfg { flags owner ; }\n")
        squatter.stdin.flush()
        await wait_until(lambda: "flags owner" in leak_table.listing(), what="the squatter's table")
        with pytest.raises(KernelRefused):
            await guard.established(tunnel(lab), pid=1)
        assert guard.switch.tunnels == {} and guard.switch.engagements == {}
    finally:
        squatter.kill()
        squatter.wait()
