"""Leak protection in the service: the kill switch's decisions kept true in the kernel.

The registry tells the guard what happens (a tunnel up, torn down on
purpose or not, a client gone, an admin's release); the guard asks the
`KillSwitch` what follows and makes the table say it, one transaction per
change, serialised by one lock.  An Establish awaits its change: when the
call returns, the new tunnel is already allowed (and, the first time, all
else is already blocked).  The grace time is a timer of its own.

Crash safety: the table is never removed on a crash, by anything.  At
start, a table a previous run left is taken over in one replace, no window:
held in `on` mode (the crash might have been the client's too),
the lockdown rules in `lockdown`, removed only in `off`.  At shutdown
(SIGTERM) it is removed in `on` mode and kept, with no tunnel allowed, in
`lockdown` (docs/leak-protection.md says how an admin gets out).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from ..kernel.libnft import Nft
from ..kernel.nft import Counter, NftTable
from .rules import LeakRules, ruleset
from .switch import KillSwitch, Mode, State, Tunnel

log = logging.getLogger(__name__)

RESTARTED = "netcfg was restarted while protection held (fail closed)"
_UNKNOWN = object()  # a table of an earlier run: whatever it holds, it must be replaced or removed


@dataclass(frozen=True)
class LeakSettings:
    mode: Mode = Mode.OFF
    allow_lan: bool = False
    grace: float = 30.0
    mark: int = 0x4F56  # what ProtectSocket puts on protected sockets


class LeakGuard:
    def __init__(self, settings: LeakSettings, nft: Nft,
                 lan: Callable[[frozenset[int]], Awaitable[tuple]],
                 report: Callable[[State, str], None] = lambda state, reason: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.nft, self.lan, self.report = settings, nft, lan, report
        self.switch = KillSwitch(settings.mode, settings.grace, clock)
        self.table = NftTable()
        self.lock = asyncio.Lock()
        self._installed: object = None  # the LeakRules the kernel holds; None: no table
        self._shown: tuple[State, str] | None = None
        self._timer: asyncio.Task | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.mode is not Mode.OFF

    # -- life cycle -----------------------------------------------------
    async def start(self) -> None:
        async with self.lock:
            if await self.table.exists(self.nft):
                log.warning("found %s from an earlier run: %s", self.table,
                            "removing it (leak-protection is off)" if not self.enabled else "taking it over")
                self.switch.hold(RESTARTED)
                self._installed = _UNKNOWN
            await self._sync()

    async def shutdown(self) -> None:
        """SIGTERM: `on` removes the table, `lockdown` keeps it (no tunnel is left)."""
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        async with self.lock:
            self.switch.engagements.clear()
            await self._sync()
        self.nft.close()

    # -- what happened --------------------------------------------------
    async def established(self, tunnel: Tunnel, pid: int) -> None:
        """A tunnel is up; raises (and forgets it) if the rules cannot follow."""
        async with self.lock:
            before = copy.deepcopy(self.switch)
            self.switch.established(tunnel, pid)
            try:
                await self._sync()
            except BaseException:
                self.switch = before
                raise

    async def torn_down(self, device: str, deliberate: bool) -> None:
        async with self.lock:
            self.switch.torn_down(device, deliberate)
            await self._sync()

    async def owner_gone(self, owner: str) -> None:
        async with self.lock:
            self.switch.owner_gone(owner)
            await self._sync()

    async def release(self) -> bool:
        """An admin's release of held protection; whether anything was released."""
        async with self.lock:
            released = self.switch.release()
            await self._sync()
            return released

    async def status(self) -> tuple[State, str, dict[str, Counter]]:
        state, reason = self.switch.status()
        counters = await self.table.counters(self.nft) if self._installed is not None else {}
        return state, reason, counters

    # -- keeping the kernel true ---------------------------------------------
    async def _sync(self) -> None:
        """Make the table say what the switch decided (under the lock)."""
        wanted = None
        if self.switch.needs_table():
            tunnels = self.switch.tunnel_indexes()
            lan = await self.lan(tunnels) if self.settings.allow_lan else ()
            wanted = LeakRules(tunnels=tunnels, marks=frozenset({self.settings.mark}),
                               allow_lan=self.settings.allow_lan, lan=lan)
        if wanted != self._installed:
            if wanted is None:
                await self.table.remove(self.nft)
            else:
                await self.table.replace(self.nft, ruleset(wanted))
            self._installed = wanted
        self._arm_timer()
        shown = self.switch.status()
        if shown != self._shown:
            self._shown = shown
            log.info("leak protection %s: %s", shown[0].value, shown[1])
            self.report(*shown)

    def _arm_timer(self) -> None:
        deadline = self.switch.next_deadline()
        if deadline is None or (self._timer is not None and not self._timer.done()):
            return
        self._timer = asyncio.get_running_loop().create_task(self._grace(deadline))

    async def _grace(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - self.switch.clock()))
        self._timer = None
        async with self.lock:
            self.switch.expire()
            try:
                await self._sync()
            except Exception as e:  # the rules stay as they were: closed, not open
                log.error("leak protection: the grace time ended but the rules could not follow: %s", e)
