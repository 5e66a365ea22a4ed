"""foreign.py and Session.reconcile against the real kernel, in a namespace.

The session is a real one whose established state is put in place by the
test (a tun, an address and a route made with `ip`, listed in its ledger):
in a kernel test nothing can open a tun in the test's namespace for it.
Every "nothing to report" is asserted after `ForeignChanges.settle()`, a
barrier that returns once every notice received so far was judged, so it
cannot pass before the handler ran."""

from __future__ import annotations

import asyncio
import socket

import pytest

from netcfg.context import Owner
from netcfg.events import ChangeType
from netcfg.foreign import ForeignChanges
from netcfg.kernel.address import AddressOnLink, TunnelAddress
from netcfg.kernel.ledger import Ledger
from netcfg.kernel.link import TunLink
from netcfg.kernel.notices import Resync
from netcfg.kernel.route import Network, Route
from netcfg.session import Session, State

pytestmark = pytest.mark.asyncio


async def established(context, kernel_netns, kernel_tun) -> tuple[Session, Route]:
    i, name = kernel_tun.index, kernel_tun.name
    await kernel_netns.ip_async("route", "add", "192.0.2.0/24", "dev", name, "proto", "111")
    session = Session(context, "/p/1_t", "t", Owner(0, 1, ":1.1"))
    session.config.networks = [Network("192.0.2.0", 24, None, False, False)]
    link = TunLink(i, name)
    route = Route(socket.AF_INET, "192.0.2.0", 24, i)
    session.ledger = Ledger("t", context.nl, context.journal)
    session.ledger.entries = [link, AddressOnLink(i, TunnelAddress("10.200.0.2", 24, "", False)), route]
    session.link, session.state = link, State.ESTABLISHED
    context.tunnels.add(i, session)
    return session, route


async def test_resync_finds_what_vanished_unannounced(context, kernel_netns, kernel_tun):
    """Not subscribed to the watch: every notice is "lost", only Resync comes."""
    session, route = await established(context, kernel_netns, kernel_tun)
    foreign = ForeignChanges(context.tunnels, lambda: [session])
    try:
        foreign.on_notice(Resync())
        await foreign.settle()
        assert context.events.changes == []  # all there: nothing to say
        await kernel_netns.ip_async("route", "del", "192.0.2.0/24", "dev", kernel_tun.name)
        foreign.on_notice(Resync())
        await foreign.settle()
        foreign.on_notice(Resync())
        await foreign.settle()  # forgotten the first time: not reported twice
    finally:
        await foreign.stop()
    assert [(c.type, c.device, c.details["subnet"], c.origin) for c in context.events.changes] == [
        (ChangeType.ROUTE_REMOVED, kernel_tun.name, "192.0.2.0", "external")]
    assert route not in session.ledger.entries and len(session.ledger.entries) == 2


async def test_someone_elses_route_on_the_link_is_reported_not_taken(context, kernel_netns, kernel_tun):
    session, _ = await established(context, kernel_netns, kernel_tun)
    foreign = ForeignChanges(context.tunnels, lambda: [session])
    context.watch.subscribe(foreign.on_notice)
    try:
        await kernel_netns.ip_async("route", "add", "198.51.100.0/24", "dev", kernel_tun.name)
        await kernel_netns.ip_async("route", "del", "198.51.100.0/24", "dev", kernel_tun.name)
        await wait_for_changes(context, foreign, 2)
    finally:
        await foreign.stop()
    assert [(c.type, c.details["subnet"], c.origin) for c in context.events.changes] == [
        (ChangeType.ROUTE_ADDED, "198.51.100.0", "external"), (ChangeType.ROUTE_REMOVED, "198.51.100.0", "external")]
    assert len(session.ledger.entries) == 3  # not ours: never in the ledger


async def wait_for_changes(context, foreign, count: int) -> None:
    """The notices come from the kernel watch on its own time: settle until they were judged."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while len(context.events.changes) < count:
        assert loop.time() < end, f"timed out: {context.events.changes}"
        await asyncio.sleep(0.01)
        await foreign.settle()
