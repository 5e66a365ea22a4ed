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
  the client gone and that cleanup is ours (netcfg/process.py);
* unrelated: ignored.

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
import ipaddress
import logging
import socket
from typing import TYPE_CHECKING, Callable, Iterable

from .events import Change, ChangeType, address_details, route_details
from .kernel.address import AddressOnLink
from .kernel.link import TunLink
from .kernel.route import RT_TABLE_MAIN, RTPROT_NETCFG, Route
from .kernel.watch import AddressNotice, LinkNotice, Notice, Resync, RouteNotice
from .process import has_exited
from .session import Session, State

if TYPE_CHECKING:
    from .registry import Context

log = logging.getLogger(__name__)

COLLECT = 0.05  # seconds: notices of one outside action arrive together
CLIENT_EXIT_GRACE = 0.5  # seconds: a client's exit closes its fds before it is a zombie
RTPROT_KERNEL = 2  # prefix routes the kernel adds for an address
EXTERNAL = "external"


def observed_key(ipv6: bool, dst: str, prefix: int, oif: int | None, table: int) -> tuple:
    """How a route of a ledger is recognised in a notice or a dump.

    No metric: the kernel reports IPv6's default metric (1024) where we
    sent none.  With the device: a notice about the same destination on
    another link is not about our route.  (Not kernel/uplink.py's
    `slot_key`, the kernel's identity of a route, metric included.)
    """
    return ("route", ipv6, dst, prefix, oif, table)


def key_of(obj) -> tuple:
    if isinstance(obj, Route):
        return observed_key(obj.family == socket.AF_INET6, obj.dst, obj.prefix, obj.oif, obj.table)
    if isinstance(obj, AddressOnLink):
        a = obj.address
        return ("address", obj.ifindex, a.address, a.prefix, a.ipv6)
    return ("link", obj.ifindex)


def notice_key(n: Notice) -> tuple:
    if isinstance(n, RouteNotice):
        return observed_key(n.ipv6, n.dst, n.prefix, n.oif, n.table)
    if isinstance(n, AddressNotice):
        return ("address", n.ifindex, n.address, n.prefix, n.ipv6)
    return ("link", n.ifindex)


class ForeignChanges:
    def __init__(self, ctx: "Context", sessions: Callable[[], Iterable[Session]]) -> None:
        self.ctx = ctx
        self.sessions = sessions
        self._queue: list[Notice] = []
        self._task: asyncio.Task | None = None

    # -- the watch listener: cheap, synchronous filtering --

    def on_notice(self, notice: Notice) -> None:
        if self._relevant(notice):
            self._queue.append(notice)
            if self._task is None or self._task.done():
                self._task = asyncio.ensure_future(self._drain())

    def _relevant(self, n: Notice) -> bool:
        tunnels = self.ctx.tunnels
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
            try:
                await self._process(batch)
            except Exception:
                log.exception("classifying %d kernel notices", len(batch))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # -- classification, per session, under its lock --

    async def _process(self, batch: list[Notice]) -> None:
        resync_all = any(isinstance(n, Resync) for n in batch)
        links_gone = {n.ifindex for n in batch if isinstance(n, LinkNotice) and not n.added}
        for session in list(self.sessions()):
            if await self._went_with_its_client(session, links_gone):
                continue
            async with session.lock:
                if session.ledger is None or session.state is State.DESTROYED:
                    continue
                if resync_all or await self._needs_dump(session, batch):
                    await self._compare_with_kernel(session)
                else:
                    await self._apply(session, batch)

    async def _went_with_its_client(self, session: Session, links_gone: set[int]) -> bool:
        """Did the session's tun vanish because its client process died?

        The kernel deletes a tun when the last fd on it closes, i.e. when
        the client exits; the bus tells us the client is gone a little
        later and that cleanup tears the session down as ours.  Reporting
        the link as removed by someone else would be wrong: skip it.
        """
        link = session.link
        if link is None or link.ifindex not in links_gone:
            return False
        if not await has_exited(session.owner.pid, CLIENT_EXIT_GRACE):
            return False
        log.debug("device %s: tun %s went with its client (pid %d)", session.path, link.ifname, session.owner.pid)
        return True

    async def _needs_dump(self, session: Session, batch: list[Notice]) -> bool:
        """Did a link under objects of ours go away or down?  IPv4 routes then
        vanish without a notification of their own."""
        oifs = {e.oif for e in session.ledger.entries if isinstance(e, Route)}
        oifs |= {e.ifindex for e in session.ledger.entries if isinstance(e, TunLink)}
        changed = {n.ifindex: n for n in batch if isinstance(n, LinkNotice) and n.ifindex in oifs}
        if any(not n.added for n in changed.values()):
            return True
        if not changed or session.state is not State.ESTABLISHED:
            return False  # Disable sets the link down itself
        # "Down" may be old news (a new tun starts down): ask for the state now.
        links = {n.ifindex: n for n in await self.ctx.watch.dump(routes=False, addresses=False)}
        return any(i not in links or not links[i].up for i in changed)

    async def _apply(self, session: Session, batch: list[Notice]) -> None:
        ledger = {key_of(e): e for e in session.ledger.entries}
        candidates = []
        for n in batch:
            if isinstance(n, LinkNotice):
                continue
            key = notice_key(n)
            if not n.added and key in ledger:
                candidates.append(ledger.pop(key))
            elif key not in ledger:
                self._foreign(session, n)
        if candidates:
            # A removal notice may be stale: our own Disable deleted the
            # object and a later Establish put it back before we got here.
            # The kernel's present state decides.
            routes = any(isinstance(c, Route) for c in candidates)
            addresses = any(isinstance(c, AddressOnLink) for c in candidates)
            present = {notice_key(n) for n in await self.ctx.watch.dump(False, addresses, routes)}
            gone = [c for c in candidates if key_of(c) not in present]
            if gone:
                await self._report_gone(session, gone)

    async def _compare_with_kernel(self, session: Session) -> None:
        present = {notice_key(n) for n in await self.ctx.watch.dump()}
        gone = [e for e in session.ledger.entries if key_of(e) not in present]
        if gone:
            await self._report_gone(session, gone)

    # -- what subscribers hear --

    async def _report_gone(self, session: Session, gone: list) -> None:
        """Forget `gone` and report it in teardown order: routes, addresses, the device."""
        link = next((e for e in session.ledger.entries if isinstance(e, TunLink)), None)
        ids = {id(e) for e in gone}
        link_gone = link is not None and id(link) in ids
        if link_gone:  # everything on the link went with it
            gone += [e for e in session.ledger.entries if id(e) not in ids and _on_link(e, link.ifindex)]
        await session.ledger.forget(gone)
        more = f" and {len(gone) - 5} more" if len(gone) > 5 else ""
        log.warning("device %s: removed by someone else: %s%s", session.path, ", ".join(map(str, gone[:5])), more)
        ifname = link.ifname if link is not None else session.device_name
        # The client's networks in its order (exclude routes too); not the
        # def1 halves, which were never announced (spec 8).
        routes = {(r.family == socket.AF_INET6, r.dst, r.prefix) for r in gone if isinstance(r, Route)}
        for n in session.config.networks:
            if (n.ipv6, n.address, n.prefix) in routes:
                self._emit(session, ChangeType.ROUTE_REMOVED, ifname, route_details(n.address, n.prefix, n.ipv6))
        for a in (e.address for e in gone if isinstance(e, AddressOnLink)):
            self._emit(session, ChangeType.IPADDR_REMOVED, ifname, address_details(a.address, a.prefix, a.ipv6))
        if link_gone:
            self._emit(session, ChangeType.DEVICE_REMOVED, ifname, {})

    def _foreign(self, session: Session, n: Notice) -> None:
        """Someone else's object on the device's link (not in the ledger)."""
        link = session.link
        if session.state is not State.ESTABLISHED or link is None or not any(
                isinstance(e, TunLink) and e.ifindex == link.ifindex for e in session.ledger.entries):
            return
        if isinstance(n, RouteNotice):
            if n.oif != link.ifindex or n.proto in (RTPROT_KERNEL, RTPROT_NETCFG) or n.table != RT_TABLE_MAIN:
                return  # kernel-made, or ours from an earlier ledger
            kind = ChangeType.ROUTE_ADDED if n.added else ChangeType.ROUTE_REMOVED
            gateway = (n.gateway or "") if n.added else None
            self._emit(session, kind, link.ifname, route_details(n.dst, n.prefix, n.ipv6, gateway))
        elif isinstance(n, AddressNotice):
            if n.ifindex != link.ifindex or ipaddress.ip_address(n.address).is_link_local:
                return  # the kernel's own IPv6 link-local address
            kind = ChangeType.IPADDR_ADDED if n.added else ChangeType.IPADDR_REMOVED
            self._emit(session, kind, link.ifname, address_details(n.address, n.prefix, n.ipv6))

    def _emit(self, session: Session, kind: ChangeType, device: str, details: dict) -> None:
        self.ctx.events.emit(session.path, Change(kind, device, details, origin=EXTERNAL))


def _on_link(obj, ifindex: int) -> bool:
    if isinstance(obj, Route):
        return obj.oif == ifindex
    if isinstance(obj, AddressOnLink):
        return obj.ifindex == ifindex
    return False


