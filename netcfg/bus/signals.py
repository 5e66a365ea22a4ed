"""Subscriptions, filtering, and bounded unicast fan-out of signals.

NetworkChange goes to each subscriber whose mask matches, as a unicast
signal (destination set), from the device's path (spec 8).  A subscription
ends when its subscriber leaves the bus (the original keeps it forever).

Fan-out is paced: we hand the library at most WINDOW messages at a time and
wait until they are written before handing more, so method replies never
queue behind a burst of 100,000 signals.  Each subscriber's queue is
bounded (MAX_QUEUED); when it is full, further events for that subscriber
are dropped and counted, and a warning names the subscriber.  The bus
daemon's per-connection limits protect us from a subscriber that stops
reading: the daemon takes our messages and drops what it cannot deliver.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from dbus_fast import Message, MessageType

from ..errors import InvalidArgument, NotFound
from ..events import Change, ChangeType, EventSink
from ..kernel.ip import printable
from ..log import VERB2
from . import INTERFACE

log = logging.getLogger(__name__)

WINDOW = 64  # messages handed to the library before we wait for the socket
MAX_QUEUED = 500_000  # per subscriber


@dataclass
class Subscription:
    mask: int
    uid: int
    queued: int = 0
    dropped: int = 0


class Subscriptions(EventSink):
    def __init__(self, pump: "SignalPump") -> None:
        self.by_name: dict[str, Subscription] = {}
        self.pump = pump
        self._any = 0  # union of all masks, for the cheap `wants`

    def subscribe(self, name: str, uid: int, mask: int) -> None:
        if mask == 0:
            raise InvalidArgument("Subscription filter flag must be > 0")
        if mask > 65535:
            raise InvalidArgument("Invalid subscription flag, must be < 65535")
        self.by_name[name] = Subscription(mask, uid)
        self._recompute()
        log.log(VERB2, "New subscription: '%s' => %s", name, describe_mask(mask))

    def unsubscribe(self, name: str) -> None:
        if self.by_name.pop(name, None) is None:
            raise NotFound(f"Subscription not found for '{printable(name)}'")
        self._recompute()
        self.pump.forget(name)

    def drop(self, name: str) -> None:
        """The subscriber left the bus."""
        if self.by_name.pop(name, None) is not None:
            self._recompute()
            self.pump.forget(name)
            log.info("subscription of %s ended: it left the bus", name)

    def listing(self) -> list[list]:
        return [[name, sub.mask] for name, sub in self.by_name.items()]

    def _recompute(self) -> None:
        self._any = 0
        for sub in self.by_name.values():
            self._any |= sub.mask

    # EventSink
    def wants(self, type_: ChangeType) -> bool:
        return bool(self._any & type_)

    def emit(self, path: str, change: Change) -> None:
        if not self._any & change.type:
            return
        details = dict(change.details)
        details["origin"] = change.origin
        body = [int(change.type), change.device, details]
        for name, sub in self.by_name.items():
            if sub.mask & change.type:
                self.pump.push(name, path, "NetworkChange", "usa{ss}", body)


def describe_mask(mask: int) -> str:
    return ", ".join(t.name for t in ChangeType if mask & t) or "(none)"


class SignalPump:
    def __init__(self, bus) -> None:
        self.bus = bus
        self.queues: dict[str, deque] = {}
        self.dropped: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.sent = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await self.flush()
        if self._task:
            self._task.cancel()

    def push(self, destination: str, path: str, member: str, signature: str, body: list) -> None:
        queue = self.queues.setdefault(destination, deque())
        if len(queue) >= MAX_QUEUED:
            n = self.dropped[destination] = self.dropped.get(destination, 0) + 1
            if n == 1:
                log.warning("signal queue for %s is full (%d): dropping its events", destination, MAX_QUEUED)
            return
        queue.append((path, member, signature, body))
        self._wake.set()

    def forget(self, destination: str) -> None:
        self.queues.pop(destination, None)
        self.dropped.pop(destination, None)

    def pending(self) -> int:
        return sum(len(q) for q in self.queues.values())

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until everything queued has been handed out."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.pending() and loop.time() < end:
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queues:
                last = None
                for _ in range(WINDOW):
                    item = self._next()
                    if item is None:
                        break
                    destination, (path, member, signature, body) = item
                    msg = Message(message_type=MessageType.SIGNAL, destination=destination, path=path,
                                  interface=INTERFACE, member=member, signature=signature, body=body)
                    last = self.bus.send(msg)
                    self.sent += 1
                if last is None:
                    break
                try:
                    await last  # written to the socket: hand out the next window
                except Exception as e:
                    log.error("signal fan-out stopped: %s", e)
                    return

    def _next(self):
        # Round-robin over destinations keeps one subscriber from starving others.
        for destination in list(self.queues):
            queue = self.queues[destination]
            if queue:
                item = queue.popleft()
                # move to the end
                del self.queues[destination]
                if queue:
                    self.queues[destination] = queue
                return destination, item
            del self.queues[destination]
        return None
