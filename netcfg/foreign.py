"""Changes made by others to what netcfg manages (house style 2.10).

Every rtnetlink notification (kernel/watch.py) is one of:

* ours and expected: a change netcfg is making or just made (route
  protocol 111 added, an object removed by our own teardown): ignored;
* someone else's change to an object of ours: an admin's `ip route del` of
  one of a device's routes, `ip addr del`, the link deleted (or gone with
  its tun fd while the client lives on), or an exclude route gone with its
  uplink.  The
  session's ledger forgets the object (so teardown neither fails nor
  reports it twice) and subscribers get the REMOVED event with
  origin=external;
* someone else's route or address added to / removed from an established
  device's link: reported as ADDED/REMOVED with origin=external, never
  put in the ledger (not ours to remove);
* the tun gone because its client process died: ignored; the bus reports
  the client gone and that cleanup is ours (netcfg/process.py says how
  that is told from an admin's `ip link del` without a timed wait);
* unrelated: ignored.

This module only filters notices and routes them to the sessions they
may concern (`Session.reconcile`, `_route`): a session alone judges them
against its ledger, forgets what is gone and reports it.

Why classification can be by content: each notice is judged with the
session's lock held, i.e. after any Establish/Disable/teardown that was
running has finished.  Our own removals are off the ledger by then, so an
object still in the ledger but reported gone was removed by someone else,
unless a later Establish of ours put it back: a dump confirms it is gone.  Notices are collected for COLLECT seconds first, so the removals of
one `ip link del` are reported together, in the order of spec 8 (routes,
addresses, device).  Kernel side effects that send no notification (IPv4
routes vanish silently when their link goes down or away) and lost
notifications (overflow: `Resync`) are found by comparing the ledger with
a dump.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Iterable

from .context import TunnelTable
from .rerun import RerunJob
from .kernel.notices import AddressNotice, LinkNotice, Notice, Resync, RouteNotice
from .kernel.route import RTPROT_NETCFG
from .session import Session

log = logging.getLogger(__name__)

COLLECT = 0.05  # seconds: notices of one outside action arrive together


class ForeignChanges:
    def __init__(self, tunnels: TunnelTable, sessions: Callable[[], Iterable[Session]]) -> None:
        self.tunnels = tunnels
        self.sessions = sessions
        self._queue: list[Notice] = []
        self._job = RerunJob(self._drain)

    # -- the watch listener: cheap, synchronous filtering --

    def on_notice(self, notice: Notice) -> None:
        if not self._job.stopped and self._relevant(notice):
            self._queue.append(notice)
            self._job.kick()

    def _relevant(self, n: Notice) -> bool:
        tunnels = self.tunnels
        if isinstance(n, RouteNotice):
            if n.added and n.proto == RTPROT_NETCFG:
                return False  # ours: every route we add carries protocol 111
            return n.oif in tunnels or (not n.added and n.proto == RTPROT_NETCFG)
        if isinstance(n, AddressNotice):
            return n.ifindex in tunnels
        if isinstance(n, LinkNotice):
            return not n.added or (n.ifindex in tunnels and not n.up)
        return isinstance(n, Resync)

    async def _drain(self) -> None:
        while self._queue:
            await asyncio.sleep(COLLECT)
            batch, self._queue = self._queue, []
            for session, notices in self._route(batch):
                try:
                    await session.reconcile(notices)
                except Exception:
                    log.exception("device %s: classifying %d kernel notices", session.path, len(notices))

    def _route(self, batch: list[Notice]) -> list[tuple[Session, list[Notice]]]:
        """Each session with the notices that may concern it, in their order.

        A notice about one of our tunnels (a route through it, an address
        on it, the link) goes to that tunnel's session; the others (a
        route of ours gone from the uplink, some other link gone, Resync)
        may concern any session's ledger, and go to each."""
        sessions = list(self.sessions())
        routed: dict[int, list[Notice]] = {id(s): [] for s in sessions}
        for n in batch:
            owner = self.tunnels.session_of(_ifindex(n))
            for session in [owner] if owner is not None and id(owner) in routed else sessions:
                routed[id(session)].append(n)
        return [(s, routed[id(s)]) for s in sessions if routed[id(s)]]

    async def settle(self) -> None:
        """Wait until every notice received so far has been judged (tests, shutdown)."""
        await self._job.settle()

    async def stop(self) -> None:
        await self._job.stop()


def _ifindex(n: Notice) -> int | None:
    """The link a notice is about: a route's device, an address's or link's own."""
    if isinstance(n, RouteNotice):
        return n.oif
    if isinstance(n, (AddressNotice, LinkNotice)):
        return n.ifindex
    return None
