"""Every task the service starts is awaited when it is cancelled (issue 15,
item 8): once `stop()`/`close()` returns, the task has finished, so no
"Task was destroyed but it is pending!" can follow.  The whole service
under asyncio's debug mode is tests/service/test_asyncio_debug.py."""

from __future__ import annotations

import asyncio

import pytest

from netcfg.bus.access import Credentials
from netcfg.bus.pump import SignalPump
from netcfg.context import TunnelTable
from netcfg.foreign import ForeignChanges
from netcfg.kernel.notices import Resync

pytestmark = pytest.mark.asyncio


async def test_the_signal_pump_waits_for_its_writer():
    pump = SignalPump(bus=None)
    pump.start()
    task = pump._task
    await asyncio.sleep(0)
    await pump.stop()
    assert task.done() and task.cancelled()


async def test_foreign_changes_wait_for_their_classification():
    foreign = ForeignChanges(TunnelTable(), lambda: [])
    foreign.on_notice(Resync())
    task = foreign._job._task
    await foreign.stop()
    assert task.done()
    foreign.on_notice(Resync())  # after stop: nothing new starts
    assert foreign._job._task is None


async def test_credential_lookups_are_awaited_when_forgotten_or_closed():
    never = asyncio.get_running_loop().create_future()

    class Bus:
        async def call(self, msg):
            return await never

    credentials = Credentials(Bus())
    credentials.prefetch(":1.1")
    credentials.prefetch(":1.2")
    tasks = list(credentials._pending.values())
    credentials.forget(":1.1")
    await credentials.close()
    assert all(t.done() for t in tasks)
