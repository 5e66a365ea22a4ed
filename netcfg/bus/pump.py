"""Unicast signals to many destinations: marshalled once, written in paced chunks.

An Establish of 10,000 routes with 10 subscribers is over 100,000 unicast
signals.  Through the library that costs ~20 us each (a Message object,
a full marshal, a send() per message) and keeps the loop from serving
calls for seconds.  Here each event's body is marshalled once; each
destination's header is marshalled once (by the library, as a template)
and then only gets its serial and body length patched in, straight into
the chunk being built (one bytearray; measured: half the cost of
sendmsg() with a list of per-message buffers).  Events are regrouped by
destination a window at a time (see _window) and the messages cut into
chunks of CHUNK_BYTES, handed to the library's writer one at a time: the
next chunk is built only when the previous one is in the socket, so a
method reply waits behind at most one chunk plus the socket's send
buffer, and the loop serves calls between chunks.

Bounds: each destination may have at most MAX_QUEUED events waiting here.
Our queue only grows while the bus daemon reads from us more slowly than we
produce (the daemon, not us, buffers for a subscriber that stops reading,
within its per-connection limits).  When a destination's share is full,
further events for it are dropped and counted; a warning names it at the
first drop, and the count is logged once its queue has drained.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from dataclasses import dataclass, field

from dbus_fast import Message, MessageType
from dbus_fast._private.marshaller import Marshaller

from .connection import send_raw

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024  # one hand-off to the writer (~200 NetworkChange signals)
WINDOW_MESSAGES = 256  # messages regrouped by destination at a time (see _window)
MAX_QUEUED = 500_000  # events waiting per destination (docs/api.md, Bounds)
_LENGTH_AND_SERIAL = struct.Struct("<II")  # at offset 4 of a little-endian header


@dataclass(eq=False)
class Destination:
    """One receiver's share of the queue."""

    name: str
    queued: int = 0
    dropped: int = 0
    gone: bool = False
    headers: dict = field(default_factory=dict, repr=False)  # Outgoing.kind -> header template


@dataclass(eq=False)
class Outgoing:
    """One signal for several destinations, in the order they will get it."""

    path: str
    interface: str
    member: str
    signature: str
    body: list
    destinations: list[Destination]
    marshalled: bytes | None = field(default=None, repr=False)
    kind: tuple = field(default=(), repr=False)  # (path, interface, member, signature): the header's key

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = (self.path, self.interface, self.member, self.signature)


class SignalPump:
    def __init__(self, bus) -> None:
        self.bus = bus
        self.events: deque[Outgoing] = deque()  # not yet in a window
        self.destinations: dict[str, Destination] = {}
        self.sent = 0
        self._runs: deque[list] = deque()  # the current window: [destination, its events, next index]
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await self.flush()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # -- producers --

    def push(self, names: list[str], path: str, interface: str, member: str, signature: str, body: list) -> None:
        """Queue one signal for each of `names` (unique bus names)."""
        receivers = []
        destinations = self.destinations
        for name in names:
            dest = destinations.get(name)
            if dest is None:
                dest = destinations[name] = Destination(name)
            if dest.queued >= MAX_QUEUED:
                dest.dropped += 1
                if dest.dropped == 1:
                    log.warning("signal queue for %s is full (%d events): dropping its events", name, MAX_QUEUED)
                continue
            dest.queued += 1
            receivers.append(dest)
        if receivers:
            self.events.append(Outgoing(path, interface, member, signature, body, receivers))
            self._wake.set()

    def forget(self, name: str) -> None:
        """`name` left the bus or unsubscribed: what is queued for it goes nowhere."""
        dest = self.destinations.pop(name, None)
        if dest is not None:
            dest.gone = True

    def pending(self) -> int:
        return sum(d.queued for d in self.destinations.values()) + sum(len(r[1]) - r[2] for r in self._runs)

    def busy(self) -> bool:
        """Something is queued that has not been handed to the library yet."""
        return bool(self.events or self._runs)

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until everything queued has been handed out."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.busy() and loop.time() < end:
            await asyncio.sleep(0.01)

    # -- the writer side --

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.busy():
                chunk = self._fill()
                if not chunk:
                    continue
                try:
                    await send_raw(self.bus, chunk)  # in the socket: build the next one
                except Exception as e:
                    log.error("signal fan-out stopped: %s", e)
                    return

    def _window(self) -> None:
        """Take the next WINDOW_MESSAGES messages' events and group them by destination.

        Within a window each destination gets its events back to back (in
        order), so the daemon writes long runs of messages to one
        subscriber and it reads many in one wake-up rather than a few.
        A window may span many chunks: its size sets how long the runs
        are, CHUNK_BYTES how long a method reply may wait behind us.
        """
        events = self.events
        runs: dict[Destination, list[Outgoing]] = {}
        messages = 0
        while events and messages < WINDOW_MESSAGES:
            event = events.popleft()
            for dest in event.destinations:
                run = runs.get(dest)
                if run is None:
                    runs[dest] = [event]
                else:
                    run.append(event)
            messages += len(event.destinations)
        for dest, run in runs.items():
            dest.queued -= len(run)
            if not dest.queued and dest.dropped:
                log.warning("%d events for %s were dropped while its queue was full", dest.dropped, dest.name)
                dest.dropped = 0
            self._runs.append([dest, run, 0])

    def _fill(self) -> bytearray:
        """The next chunk: about CHUNK_BYTES of messages from the current window."""
        chunk = bytearray()
        runs = self._runs
        next_serial = self.bus.next_serial
        pack_into = _LENGTH_AND_SERIAL.pack_into
        while len(chunk) < CHUNK_BYTES:
            if not runs:
                if not self.events:
                    break
                self._window()
                continue
            run = runs[0]
            dest, events, i = run
            if dest.gone:
                runs.popleft()
                continue
            headers = dest.headers
            end = len(events)
            while i < end and len(chunk) < CHUNK_BYTES:
                event = events[i]
                i += 1
                body = event.marshalled
                if body is None:
                    body = event.marshalled = bytes(Marshaller(event.signature, event.body).marshall())
                header = headers.get(event.kind)
                if header is None:
                    if len(headers) >= 64:  # one per device path: devices come and go
                        headers.clear()
                    header = headers[event.kind] = header_template(dest.name, event)
                start = len(chunk)
                chunk += header
                pack_into(chunk, start + 4, len(body), next_serial())
                chunk += body
            self.sent += i - run[2]
            if i < end:
                run[2] = i
                break
            runs.popleft()
        return chunk


def header_template(destination: str, event: Outgoing) -> bytes:
    """The library's own header for this signal; body length and serial get patched.

    A header is 16 fixed bytes (the last 4: length of the field array), the
    fields, then padding to 8 before the body.
    """
    msg = Message(message_type=MessageType.SIGNAL, destination=destination, path=event.path,
                  interface=event.interface, member=event.member, signature=event.signature,
                  body=event.body, serial=1)
    raw = msg._marshall(False)
    if raw[0:1] != b"l":
        raise RuntimeError("the library no longer marshals little-endian")
    fields_length = struct.unpack_from("<I", raw, 12)[0]
    return bytes(raw[:16 + fields_length + (-fields_length % 8)])
