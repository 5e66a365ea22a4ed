"""The DNS backends' window on the bus (dns/backend.py `BusCaller`).

dns/ never imports the bus library: the systemd-resolved backend gets this
object, which makes one method call and turns an error reply into the
domain error `BusCallError` (name + text), asks the bus driver about names,
and follows NameOwnerChanged for the names a backend watches.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from dbus_fast import Message, MessageType

from ..dns.backend import BusCallError

log = logging.getLogger(__name__)

DBUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
TIMEOUT = 10.0  # seconds; below the bus's own 25 s reply timeout


class ResolverCalls:
    def __init__(self, bus, timeout: float = TIMEOUT) -> None:
        self.bus = bus
        self.timeout = timeout
        self._watches: dict[str, list[Callable[[bool], Awaitable[None] | None]]] = {}
        self._tasks: set[asyncio.Task] = set()
        bus.add_message_handler(self._on_message)

    async def call(self, destination: str, path: str, interface: str, member: str,
                   signature: str = "", body: list | None = None) -> list:
        what = f"{interface}.{member}"
        msg = Message(destination=destination, path=path, interface=interface, member=member,
                      signature=signature, body=body or [])
        try:
            reply = await asyncio.wait_for(self.bus.call(msg), self.timeout)
        except asyncio.TimeoutError:
            raise BusCallError(what, "org.freedesktop.DBus.Error.NoReply",
                               f"{destination} did not answer within {self.timeout:.0f} s") from None
        except Exception as e:  # the connection itself failed
            raise BusCallError(what, "org.freedesktop.DBus.Error.Disconnected", str(e)) from None
        if reply.message_type is MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise BusCallError(what, reply.error_name or "org.freedesktop.DBus.Error.Failed", text)
        return list(reply.body)

    async def has_owner(self, name: str) -> bool:
        try:
            return bool((await self.call(*DBUS, "NameHasOwner", "s", [name]))[0])
        except BusCallError as e:
            log.warning("NameHasOwner(%s): %s", name, e)
            return False

    async def activatable(self, name: str) -> bool:
        try:
            return name in (await self.call(*DBUS, "ListActivatableNames"))[0]
        except BusCallError as e:
            log.warning("ListActivatableNames: %s", e)
            return False

    async def watch(self, name: str, callback: Callable[[bool], Awaitable[None] | None]) -> None:
        if name not in self._watches:
            rule = (f"type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                    f"interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{name}'")
            await self.call(*DBUS, "AddMatch", "s", [rule])
        self._watches.setdefault(name, []).append(callback)

    def _on_message(self, msg: Message):
        # Only observes: never claims a message (returns None), so the
        # service's dispatcher still sees every call and signal.
        if (msg.message_type is MessageType.SIGNAL and msg.member == "NameOwnerChanged"
                and msg.sender == "org.freedesktop.DBus" and msg.interface == "org.freedesktop.DBus"):
            name, old, new = msg.body
            if name in self._watches and old != new:
                for callback in self._watches[name]:
                    result = callback(bool(new))
                    if asyncio.iscoroutine(result):
                        task = asyncio.ensure_future(result)
                        self._tasks.add(task)
                        task.add_done_callback(self._done)
        return None

    async def close(self) -> None:
        """Shutdown: handlers of bus name changes still running are cancelled and awaited."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("DNS: handling a bus name change failed", exc_info=task.exception())
