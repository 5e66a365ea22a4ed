"""The manager's core: devices, their owners, protections, and cleanup.

Everything the bus faces ask for ends here or in a Session; nothing in this
module knows D-Bus.  Every way a device can end (Destroy, Cleanup from its
PID, its client leaving the bus, shutdown) goes through `Session.teardown`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Callable

from .config import Options
from .dns.order import DnsManager
from .errors import InvalidArgument, UnknownDevice
from .events import EventSink
from .kernel import protect, sweep
from .kernel.ip import printable
from .kernel.ledger import Ledger
from .kernel.netlink import Netlink
from .kernel.watch import KernelWatch
from .session import Owner, Session, State
from .state import Journal

log = logging.getLogger(__name__)

MANAGER_PATH = "/net/openvpn/v3/netcfg"
MAX_DEVICES = 256  # per owner UID; keeps one client from filling the bus with objects
_PATH_ELEMENT = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def sanitise_name(name: str) -> str:
    """Spec 2.4: drop trailing newlines, control characters and non-ASCII."""
    return "".join(ch for ch in name.rstrip("\n") if 0x20 <= ord(ch) < 0x80)


@dataclass
class Context:
    """What sessions share: options, kernel handles, journal, DNS, events."""

    options: Options
    nl: Netlink
    journal: Journal
    dns: DnsManager
    events: EventSink
    watch: KernelWatch
    tunnels: dict[int, Session] = field(default_factory=dict)

    def tunnel_ifindexes(self) -> set[int]:
        return set(self.tunnels)

    def note_tunnel(self, session: Session, ifindex: int) -> None:
        self.tunnels[ifindex] = session

    def forget_tunnel(self, session: Session) -> None:
        keep = session.link.ifindex if session.link and session.state is not State.DESTROYED else None
        for ifindex in [i for i, s in self.tunnels.items() if s is session and i != keep]:
            del self.tunnels[ifindex]


class DeviceRegistry:
    def __init__(self, ctx: Context, on_removed: Callable[[Session], None] = lambda s: None) -> None:
        self.ctx = ctx
        self.sessions: dict[str, Session] = {}
        self.protections: dict[str, tuple[Owner, Ledger]] = {}  # by caller's bus name
        self.on_removed = on_removed

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
        session = Session(self.ctx, path, clean, owner)
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

    async def destroy(self, session: Session, reason: str) -> None:
        try:
            await session.teardown()
        finally:
            if self.sessions.pop(session.path, None) is not None:
                log.info("device %s removed: %s", session.path, reason)
                self.on_removed(session)
            await self._release_if_last(session.owner)

    async def _release_if_last(self, owner: Owner) -> None:
        # Protections end with the caller's last device (issue 5).
        if not any(s.owner.pid == owner.pid for s in self.sessions.values()):
            await self.release_protections(lambda o: o.pid == owner.pid)

    async def cleanup_pid(self, pid: int) -> None:
        """Cleanup(): everything created by that PID (spec 4.5, with [rec])."""
        for session in [s for s in self.sessions.values() if s.owner.pid == pid]:
            await self.destroy(session, f"Cleanup() from pid {pid}")
        await self.release_protections(lambda o: o.pid == pid)

    async def owner_gone(self, bus_name: str) -> None:
        """The creator left the bus: tear down what it made, established or not."""
        for session in [s for s in self.sessions.values() if s.owner.bus_name == bus_name]:
            log.error("Client process with bus name %s disappeared! Cleaning up %s.", bus_name, session.path)
            await self.destroy(session, f"client {bus_name} disappeared")
        await self.release_protections(lambda o: o.bus_name == bus_name)

    # -- protections --

    async def protect_socket(self, owner: Owner, remote: str, ipv6: bool, fd: int | None) -> bool:
        opts = self.ctx.options
        _, ledger = self.protections.setdefault(
            owner.bus_name, (owner, Ledger(f"protect-{owner.pid}-{owner.bus_name}", self.ctx.nl, self.ctx.journal))
        )
        return await protect.protect(
            self.ctx.nl, ledger, remote, ipv6, self.ctx.tunnel_ifindexes(), opts.redirect_method, fd, opts.set_somark
        )

    async def release_protections(self, match: Callable[[Owner], bool]) -> None:
        for name, (owner, ledger) in list(self.protections.items()):
            if match(owner):
                del self.protections[name]
                await ledger.undo()

    # -- service lifetime --

    async def recover(self) -> None:
        """Undo what a crashed run left in the kernel: its journal, then orphans."""
        for key, objects in self.ctx.journal.leftovers().items():
            ledger = Ledger(key, self.ctx.nl, self.ctx.journal)
            ledger.entries = list(objects)  # undo() empties the list it walks
            errors = await ledger.undo()
            log.warning("recovered %s from an earlier run: %d objects removed%s", key, len(objects),
                        f", {len(errors)} errors" if errors else "")
        orphans = await sweep.orphan_routes(self.ctx.nl)
        if orphans:
            log.warning("removed %d routes of ours that no journal listed (state dir lost?)", orphans)

    async def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            await self.destroy(session, "service shutdown")
        await self.release_protections(lambda o: True)


def may_access(owner: Owner, uid: int, pid: int) -> bool:
    """Device owner rule: root, or the creating process (any of its connections)."""
    return uid == 0 or (uid == owner.uid and pid == owner.pid)
