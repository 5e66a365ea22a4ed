"""Unicast signals to many destinations: marshalled once, written in paced chunks.

An Establish of 10,000 routes with 10 subscribers is over 100,000 unicast
signals.  Through the library that costs ~20 us each (a Message object,
a full marshal, a send() per message) and keeps the loop from serving
calls for seconds.  Here each event's body is marshalled once; each
destination's header is marshalled once (by the library, as a template)
and then only gets its serial and body length patched in.  Messages are
concatenated into chunks of CHUNK_BYTES (grouped by destination within a
window, see _fill) and handed to the library's writer one chunk at a time: the next chunk is built only when the previous one
is in the socket, so a method reply waits behind at most one chunk plus
the socket's send buffer, and the loop serves calls between chunks.

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
WINDOW_MESSAGES = 256  # events are regrouped by destination within windows of this many messages
MAX_QUEUED = 500_000  # events waiting per destination (docs/api.md, Bounds)
_LENGTH_AND_SERIAL = struct.Struct("<II")  # at offset 4 of a little-endian header


@dataclass(eq=False)
class Destination:
    """One receiver's share of the queue."""

    name: str
    queued: int = 0
    dropped: int = 0
    gone: bool = False


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


class SignalPump:
    def __init__(self, bus) -> None:
        self.bus = bus
        self.events: deque[Outgoing] = deque()
        self.destinations: dict[str, Destination] = {}
        self.sent = 0
        self._headers: dict[tuple, bytes] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await self.flush()
        if self._task:
            self._task.cancel()

    # -- producers --

    def push(self, names: list[str], path: str, interface: str, member: str, signature: str, body: list) -> None:
        """Queue one signal for each of `names` (unique bus names)."""
        receivers = []
        for name in names:
            dest = self.destinations.get(name)
            if dest is None:
                dest = self.destinations[name] = Destination(name)
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
        for key in [k for k in self._headers if k[0] == name]:
            del self._headers[key]

    def pending(self) -> int:
        return sum(d.queued for d in self.destinations.values())

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until everything queued has been handed out."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.events and loop.time() < end:
            await asyncio.sleep(0.01)

    # -- the writer side --

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.events:
                chunk = self._fill()
                if not chunk:
                    continue
                try:
                    await send_raw(self.bus, chunk)  # in the socket: build the next one
                except Exception as e:
                    log.error("signal fan-out stopped: %s", e)
                    return

    def _fill(self) -> bytearray:
        """The next chunk: a window of events, grouped by destination.

        Within a window each destination gets its events back to back (in
        order), so the daemon writes runs of messages to one subscriber and
        it reads them in one wake-up rather than one by one.
        """
        chunk = bytearray()
        events = self.events
        while events and len(chunk) < CHUNK_BYTES:
            runs: dict[Destination, list[Outgoing]] = {}
            messages = 0
            while events and messages < WINDOW_MESSAGES:
                event = events.popleft()
                for dest in event.destinations:
                    runs.setdefault(dest, []).append(event)
                messages += len(event.destinations)
            for dest, run in runs.items():
                dest.queued -= len(run)
                if dest.gone:
                    continue
                for event in run:
                    if event.marshalled is None:
                        event.marshalled = bytes(Marshaller(event.signature, event.body).marshall())
                    self._append(chunk, dest.name, event, event.marshalled)
                if not dest.queued and dest.dropped:
                    log.warning("%d events for %s were dropped while its queue was full", dest.dropped, dest.name)
                    dest.dropped = 0
        return chunk

    def _append(self, chunk: bytearray, name: str, event: Outgoing, body: bytes) -> None:
        key = (name, event.path, event.interface, event.member, event.signature)
        header = self._headers.get(key)
        if header is None:
            if len(self._headers) > 4096:
                self._headers.clear()
            header = self._headers[key] = header_template(name, event)
        start = len(chunk)
        chunk += header
        _LENGTH_AND_SERIAL.pack_into(chunk, start + 4, len(body), self.bus.next_serial())
        chunk += body
        self.sent += 1


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
