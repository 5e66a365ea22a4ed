"""The manager's core: devices, their owners, protections, and cleanup.

Everything the bus faces ask for ends here or in a Session; nothing in this
module knows D-Bus.  Every way a device can end (Destroy, Cleanup from its
PID, its client leaving the bus, shutdown) goes through `Session.teardown`.
"""

from __future__ import annotations

import logging
import re
from typing import Callable

from .context import Context, Owner, may_access
from .errors import InvalidArgument, UnknownDevice
from .events import Change, ChangeType, route_details
from .kernel import protect, sweep
from .kernel.follow import UplinkFollower
from .kernel.ip import printable
from .kernel.ledger import Ledger
from .kernel.mark import MarkRouting
from .kernel.uplink import UplinkView
from .process import ClientProcess
from .session import Session, State

log = logging.getLogger(__name__)

__all__ = ["MANAGER_PATH", "Context", "DeviceRegistry", "Owner", "may_access", "sanitise_name"]

MANAGER_PATH = "/net/openvpn/v3/netcfg"
MAX_DEVICES = 256  # per owner UID; keeps one client from filling the bus with objects
_PATH_ELEMENT = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def sanitise_name(name: str) -> str:
    """Spec 2.4: drop trailing newlines, control characters and non-ASCII."""
    return "".join(ch for ch in name.rstrip("\n") if 0x20 <= ord(ch) < 0x80)


class DeviceRegistry:
    def __init__(self, ctx: Context, on_removed: Callable[[Session], None] = lambda s: None) -> None:
        self.ctx = ctx
        self.sessions: dict[str, Session] = {}
        self.protections: dict[str, protect.Protection] = {}  # by caller's bus name
        self.on_removed = on_removed
        opts = ctx.options
        self.mark = None if opts.set_somark is None else MarkRouting(
            ctx.nl, ctx.journal, opts.set_somark, opts.somark_table, opts.somark_priority)
        self.follower = UplinkFollower(ctx.watch, ctx.tunnels.ifindexes, self.follow_uplink)

    # -- devices --

    def create(self, name: str, owner: Owner) -> Session:
        clean = sanitise_name(name)
        if not _PATH_ELEMENT.match(clean):
            raise InvalidArgument(
                f"Error creating virtual interface '{printable(name)}': the name must be 1-64 characters of A-Z a-z 0-9 _"
            )
        path = f"{MANAGER_PATH}/{owner.pid}_{clean}"
        if path in self.sessions:
            raise InvalidArgument(f"Error creating virtual interface '{clean}': {path} exists already")
        if sum(1 for s in self.sessions.values() if s.owner.uid == owner.uid) >= MAX_DEVICES:
            raise InvalidArgument(f"Error creating virtual interface '{clean}': too many devices (at most {MAX_DEVICES})")
        session = Session(self.ctx, path, clean, owner, ClientProcess(owner.pid))
        self.sessions[path] = session
        log.info("device %s created by uid %d pid %d (%s)", path, owner.uid, owner.pid, owner.bus_name)
        return session

    def get(self, path: str) -> Session:
        try:
            return self.sessions[path]
        except KeyError:
            raise UnknownDevice(f"Object does not exist at path '{path}'") from None

    def accessible_to(self, uid: int, pid: int) -> list[Session]:
        return [s for s in self.sessions.values() if may_access(s.owner, uid, pid)]

    async def destroy(self, session: Session, reason: str, lost: bool = False) -> list[Exception]:
        """Tear down and forget one device; what could not be removed (journaled
        for the next start).  Never raises: every caller (Destroy, Cleanup, a
        vanished client, shutdown) must go on with the others."""
        errors: list[Exception] = []
        try:
            errors = await session.teardown(lost)
        except Exception as e:  # teardown gathers its own; this would be a bug
            log.exception("device %s: teardown failed (%s)", session.path, reason)
            errors = [e]
        finally:
            if self.sessions.pop(session.path, None) is not None:
                log.info("device %s removed: %s", session.path, reason)
                self.on_removed(session)
            await self._release_if_last(session.owner)
        return errors

    async def _release_if_last(self, owner: Owner) -> None:
        # A caller's protections end with its last device (issue 5).
        if not any(s.owner.bus_name == owner.bus_name for s in self.sessions.values()):
            await self.release_protections(lambda o: o.bus_name == owner.bus_name)

    async def cleanup_pid(self, pid: int) -> None:
        """Cleanup(): everything created by that PID (spec 4.5, with [rec]): by
        PID, the one place that is not by caller, as the spec says: it is
        meant for what an earlier process with the same PID left behind."""
        for session in [s for s in self.sessions.values() if s.owner.pid == pid]:
            await self.destroy(session, f"Cleanup() from pid {pid}")
        await self.release_protections(lambda o: o.pid == pid)

    async def owner_gone(self, bus_name: str) -> None:
        """The creator left the bus: tear down what it made, established or not.

        The dispatcher calls this after the calls that name had sent were
        served (bus/dispatch.py), so none of them is still running."""
        for session in [s for s in self.sessions.values() if s.owner.bus_name == bus_name]:
            log.error("Client process with bus name %s disappeared! Cleaning up %s.", bus_name, session.path,
                      extra=session.log_extra)
            await self.destroy(session, f"client {bus_name} disappeared", lost=True)
        await self.release_protections(lambda o: o.bus_name == bus_name)

    # -- protections --

    async def protect_socket(self, owner: Owner, remote: str, ipv6: bool, fd: int | None,
                             device_path: str | None = None) -> bool:
        """The caller's protection, replaced by this request.

        The protection's lock is held for the whole request, and a release
        takes it too: a ProtectSocket either ends before the release (which
        then removes what it added) or starts after it, on a new protection
        with a new journal key.  Never in between (the shutdown race).
        """
        while True:
            prot = self.protections.get(owner.bus_name)
            if prot is None:
                key = self.ctx.journal.new_key(f"protect-{owner.bus_name}-{owner.pid}")
                prot = self.protections[owner.bus_name] = protect.Protection(
                    owner, Ledger(key, self.ctx.nl, self.ctx.journal))
            async with prot.lock:
                if prot.released:
                    continue  # released while we waited: the caller's next protection is a new one
                prot.device_path = device_path
                return await protect.protect(self.ctx.nl, prot, remote, ipv6, self.ctx.tunnels.ifindexes(),
                                             self.ctx.options.redirect_method, fd, self.mark)

    async def release_protections(self, match: Callable[[Owner], bool]) -> None:
        for name, prot in list(self.protections.items()):
            if match(prot.owner):
                if self.protections.get(name) is prot:
                    del self.protections[name]
                if prot.lock.locked():
                    log.info("protection of %s: waiting for its ProtectSocket in progress", name)
                try:
                    errors = await prot.release()
                    if self.mark is not None:
                        await self.mark.release(prot.ledger.key)
                    for error in errors:
                        log.warning("releasing the protection of %s: %s", name, error)
                except Exception:
                    log.exception("releasing the protections of %s failed", name)

    # -- following the uplink (kernel/follow.py) --

    async def follow_uplink(self) -> None:
        """The uplink changed: protections, exclude routes and the mark table move with it."""
        prots = [p for p in self.protections.values() if p.remote]
        sessions = [s for s in self.sessions.values() if s.state is State.ESTABLISHED]
        if not (prots or sessions or (self.mark and self.mark.holders)):
            return
        view = await UplinkView.read(self.ctx.nl, self.ctx.tunnels.ifindexes())
        for prot in prots:
            for _, route in await prot.follow(view):
                self._emit_protected(prot, route)
        for session in sessions:
            await session.follow_uplink(view)
        if self.mark is not None:
            await self.mark.follow(view)

    def _emit_protected(self, prot: protect.Protection, route) -> None:
        # A protected host route belongs to a caller, not to a device: the
        # event goes out from the device named in its ProtectSocket call (or
        # the caller's only device), else from the manager object.
        if not self.ctx.events.wants(ChangeType.ROUTE_EXCLUDED):
            return
        session = self.sessions.get(prot.device_path or "")
        if session is None:
            mine = [s for s in self.sessions.values() if s.owner.bus_name == prot.owner.bus_name]
            session = mine[0] if len(mine) == 1 else None
        path = session.path if session else MANAGER_PATH
        device = session.device_name if session and session.state is State.ESTABLISHED else ""
        details = route_details(route.dst, route.prefix, prot.ipv6, route.gateway or "")
        self.ctx.events.emit(path, Change(ChangeType.ROUTE_EXCLUDED, device, details))

    # -- service lifetime --

    async def recover(self) -> None:
        """Undo what a crashed run left in the kernel: its journal, then orphans."""
        for key, objects in self.ctx.journal.leftovers().items():
            ledger = Ledger(key, self.ctx.nl, self.ctx.journal)
            ledger.entries = list(objects)  # undo() empties the list it walks
            errors = await ledger.undo()
            log.warning("recovered %s from an earlier run: %d objects removed%s", key, len(objects),
                        f", {len(errors)} errors" if errors else "")
        orphans = await sweep.orphan_routes(self.ctx.nl) + await sweep.orphan_rules(self.ctx.nl)
        if orphans:
            log.warning("removed %d routes or rules of ours that no journal listed (state dir lost?)", orphans)

    async def shutdown(self) -> None:
        await self.follower.stop()
        for session in list(self.sessions.values()):
            await self.destroy(session, "service shutdown")
        await self.release_protections(lambda o: True)

