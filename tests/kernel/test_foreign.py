"""foreign.py's resynchronisation: after lost notifications (overflow), the
ledger is compared with a dump.  Stand-ins: a minimal session and event
sink (no bus here); the kernel objects are real, in a namespace."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

import pytest

from netcfg.events import ChangeType
from netcfg.foreign import ForeignChanges
from netcfg.kernel.address import AddressOnLink, TunnelAddress
from netcfg.kernel.ledger import Ledger
from netcfg.kernel.link import TunLink
from netcfg.kernel.route import Network, Route
from netcfg.kernel.watch import KernelWatch, Resync
from netcfg.session import DeviceConfig, State
from netcfg.state import NullJournal


class Events:
    def __init__(self) -> None:
        self.changes = []

    def emit(self, path, change) -> None:
        self.changes.append(change)


@pytest.mark.asyncio
async def test_resync_finds_what_vanished_unannounced(kernel_netns, kernel_tun):
    i, name = kernel_tun.index, kernel_tun.name
    await kernel_netns.ip_async("route", "add", "192.0.2.0/24", "dev", name, "proto", "111")
    watch = KernelWatch()
    with kernel_netns.inside():
        watch.open()  # not started: every notification is "lost"
    ledger = Ledger("t", None, NullJournal())
    link = TunLink(i, name)
    route = Route(socket.AF_INET, "192.0.2.0", 24, i)
    ledger.entries = [link, AddressOnLink(i, TunnelAddress("10.200.0.2", 24, "", False)), route]
    config = DeviceConfig(networks=[Network("192.0.2.0", 24, None, False, False)])
    session = SimpleNamespace(ledger=ledger, lock=asyncio.Lock(), state=State.ESTABLISHED, config=config,
                              link=link, path="/p", device_name=name)
    events = Events()
    foreign = ForeignChanges(SimpleNamespace(tunnels={i: session}, watch=watch, events=events), lambda: [session])
    try:
        foreign.on_notice(Resync())
        await asyncio.sleep(0.3)
        assert events.changes == []  # all there: nothing to say
        await kernel_netns.ip_async("route", "del", "192.0.2.0/24", "dev", name)
        foreign.on_notice(Resync())
        await asyncio.sleep(0.3)
    finally:
        await watch.stop()
    assert [(c.type, c.device, c.details["subnet"], c.origin) for c in events.changes] == [
        (ChangeType.ROUTE_REMOVED, name, "192.0.2.0", "external")]
    assert route not in ledger.entries and len(ledger.entries) == 2
