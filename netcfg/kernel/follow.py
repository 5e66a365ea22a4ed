"""Following the uplink: when the way out changes, what bypasses the tunnels moves too.

Protected host routes, exclude routes and the --set-somark table all go
"via the uplink gateway".  When that changes while they exist (DHCP hands
out a new gateway, a second uplink with a better default route appears,
the uplink goes down and up), kernel/watch.py tells us and the registry
recomputes them (`DeviceRegistry.follow_uplink`).

Which notices count: routes in the main table that are not ours (protocol
111: our own replacements must not wake us again) and not on our tunnels;
links other than our tunnels (taking a link down flushes its IPv4 routes,
ours included); a Resync after lost notices.  Everything else is ignored.

Debounce: a DHCP renewal or a link flap is a burst of notices.  The first
one arms a timer (`DELAY`), the rest of the burst joins it, then one
recompute runs; notices that arrive while it runs cause exactly one more.
A recompute reads the main table once (kernel/uplink.py: one filtered raw
dump per family, some 10-20 ms even with 10,000 routes of ours in it) and
computes every host route, exclude route and the mark table from that.

A link notice is judged again when the timer fires: a tun that Establish
is creating announces itself (RTM_NEWLINK) before Establish has learnt its
ifindex and counted it as ours.  Judged on arrival, it used to start a
recompute, i.e. a dump of the main table with all the new tunnel's routes,
in the middle of the Establish's NetworkChange burst (bench/FANOUT.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from .route import RT_TABLE_MAIN, RTPROT_NETCFG
from ..rerun import RerunJob
from .watch import KernelWatch, LinkNotice, Notice, Resync, RouteNotice

log = logging.getLogger(__name__)

DELAY = 0.2  # seconds from the first notice of a burst to the recompute


class UplinkFollower:
    def __init__(self, watch: KernelWatch, tunnels: Callable[[], set[int]],
                 recompute: Callable[[], Awaitable[None]], delay: float = DELAY) -> None:
        self.tunnels, self.recompute, self.delay = tunnels, recompute, delay
        self._job = RerunJob(self._run)
        self._dirty = False  # a relevant notice other than a link's
        self._links: set[int] = set()  # links that changed; ours or not is decided when the timer fires
        watch.subscribe(self.notice)

    def relevant(self, notice: Notice) -> bool:
        if isinstance(notice, RouteNotice):
            return (notice.table == RT_TABLE_MAIN and notice.proto != RTPROT_NETCFG
                    and notice.oif not in self.tunnels())
        if isinstance(notice, LinkNotice):
            return notice.ifindex not in self.tunnels()
        return isinstance(notice, Resync)

    def notice(self, notice: Notice) -> None:
        # After stop (shutdown), teardown's own link removals must not start a new round.
        if self._job.stopped or not self.relevant(notice):
            return
        if isinstance(notice, LinkNotice):
            self._links.add(notice.ifindex)
        else:
            self._dirty = True
        self._job.kick()

    async def _run(self) -> None:
        while self._dirty or self._links:
            await asyncio.sleep(self.delay)
            links, self._links = self._links, set()
            dirty, self._dirty = self._dirty, False
            if not dirty and links <= self.tunnels():
                continue  # only our own tunnels, known as ours by now
            try:
                await self.recompute()
            except Exception:
                # Keep following: the next change gets another chance.
                log.exception("following the uplink failed")

    async def settle(self) -> None:
        """Wait until no recompute is pending (for shutdown and tests)."""
        await self._job.settle()

    async def stop(self) -> None:
        await self._job.stop()
