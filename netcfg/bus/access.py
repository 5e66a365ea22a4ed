"""Who is calling, and may they?  Caller identity + one policy per member.

Identity comes from the bus daemon (GetConnectionCredentials), fetched
asynchronously and cached per unique name.  The look-up starts as soon as
a sender's first message arrives, so a client that sends Cleanup() and exits
at once (the real one does, spec 1.7) is still known.  The entry is dropped
after that sender's queued calls when its name leaves the bus.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from dbus_fast import Message, MessageType

from ..context import Owner, may_access
from ..errors import NotAuthorized
from .members import Policy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    bus_name: str
    uid: int
    pid: int

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def as_owner(self) -> Owner:
        return Owner(self.uid, self.pid, self.bus_name)


class Credentials:
    def __init__(self, bus) -> None:
        self.bus = bus
        self._pending: dict[str, asyncio.Future] = {}
        self._forgotten: set[asyncio.Task] = set()  # cancelled look-ups, until they have unwound

    def prefetch(self, name: str) -> None:
        if name not in self._pending:
            self._pending[name] = asyncio.ensure_future(self._fetch(name))

    async def lookup(self, name: str) -> Caller:
        self.prefetch(name)
        caller = await asyncio.shield(self._pending[name])
        if caller is None:
            raise NotAuthorized(f"cannot identify caller {name}")
        return caller

    def forget(self, name: str) -> None:
        fut = self._pending.pop(name, None)
        if fut is not None and not fut.done():
            fut.cancel()
            self._forgotten.add(fut)
            fut.add_done_callback(self._forgotten.discard)

    async def close(self) -> None:
        """Shutdown: every look-up still running is cancelled and awaited."""
        tasks = {*self._pending.values(), *self._forgotten}
        self._pending.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch(self, name: str) -> Caller | None:
        reply = await self.bus.call(
            Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus", member="GetConnectionCredentials",
                    signature="s", body=[name])
        )
        if reply.message_type is not MessageType.METHOD_RETURN:
            log.warning("credentials of %s: %s", name, reply.body[0] if reply.body else reply.error_name)
            return None
        creds = reply.body[0]
        try:
            return Caller(name, creds["UnixUserID"].value, creds["ProcessID"].value)
        except KeyError:
            return None


def authorize(policy: Policy, caller: Caller, owner: Owner | None, what: str) -> None:
    if policy is Policy.BUS_POLICY:
        return
    if policy is Policy.ROOT_ONLY and caller.is_root:
        return
    if policy is Policy.OWNER_OR_ROOT and owner is not None and may_access(owner, caller.uid, caller.pid):
        return
    raise NotAuthorized(f"{what}: access denied for uid {caller.uid} pid {caller.pid} ({caller.bus_name})")
