"""Batched rtnetlink route requests for asyncio.

pyroute2 spends ~0.3 ms of Python per route; this sender ~7 us.  Design:

* Batching.  Up to `per_datagram` requests (`Route.encode`) go out per
  `send()`.  The kernel runs them inside that syscall, in order, queueing
  one ack each; a failed request does not stop the rest.  So when `send()`
  returns, every ack it will produce is already queued (or dropped).
* Bounded window.  Acks wait in our receive buffer; when it is full the
  kernel drops them (reporting ENOBUFS once) and we could no longer say
  which routes exist.  So at most `window` requests are unacked, the window
  sized from the buffer we actually got (we ask for a big SO_RCVBUFFORCE).
* Ack matching.  A call uses consecutive sequence numbers from `base`: an
  ack's index is `seq - base`.  A `loop.add_reader` callback reads acks
  from the non-blocking socket and resolves the future the sender awaits;
  the loop never blocks.  Acks a cancelled call left are dropped before
  the next call starts.  Calls are serialised by a lock.
* Fairness.  The kernel works inside `send()`, so one datagram (~2 ms) is
  the longest the loop is held; the sender yields after each one.

Errors keep the kernel's errno and its extended-ack text (NETLINK_EXT_ACK).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .nlmsg import GONE, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NLMSG_ERROR, SOL_NETLINK, error_code, extack, messages
from .route import Route

log = logging.getLogger(__name__)

SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33

# 256 routes are ~20 KiB and ~2 ms of kernel time per send(); 2048 acks in
# flight keep the kernel busy while we read, in ~4 MiB of receive buffer.
PER_DATAGRAM, MAX_IN_FLIGHT = 256, 2048
SOCKET_BUFFER = 32 << 20
MAX_REQUEST = 96  # bytes; the largest route request (IPv6, every attribute) is 92
# Receive-buffer bytes one queued ack may cost: the kernel charges skb
# truesize, 832 bytes per capped ack (extack or not) on 6.18; 2048 is ample.
ACK_COST = 2048
SEND_RETRIES = 100


@dataclass(frozen=True, slots=True)
class RouteFailure:
    """The kernel refused one route; `extack` is its explanation, if any."""

    route: Route
    errno: int
    extack: str = ""

    def __str__(self) -> str:
        text = f"{self.route}: {errno.errorcode.get(self.errno, self.errno)} ({self.errno})"
        return f"{text}: {self.extack}" if self.extack else text


class _Call:
    """The acks of one add/delete call, by index into its routes."""

    __slots__ = ("base", "sent", "acked", "done", "errors", "waiter", "failure")

    def __init__(self, base: int, count: int) -> None:
        self.base = base
        self.sent = self.acked = 0  # sent: requests the kernel has processed
        self.done = bytearray(count)  # 1 = acked
        self.errors: dict[int, tuple[int, str]] = {}
        self.waiter: asyncio.Future[None] | None = None
        self.failure: BaseException | None = None

    def ack(self, seq: int, err: int, extack: str) -> None:
        index = (seq - self.base) & 0xFFFFFFFF
        if index >= self.sent or self.done[index]:
            return  # not a request of this call
        self.done[index] = 1
        self.acked += 1
        if err:
            self.errors[index] = (err, extack)

    def fail(self, indexes: range, err: int, text: str) -> None:
        """Give every unacked request in `indexes` this outcome."""
        for index in indexes:
            if not self.done[index]:
                self.done[index], self.errors[index] = 1, (err, text)

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class RouteBatcher:
    """Adds and deletes many routes in the network namespace it was opened in."""

    def __init__(self, *, per_datagram: int = PER_DATAGRAM, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._per_datagram, self._max_in_flight = per_datagram, max_in_flight
        self._window = max_in_flight  # open() sizes it to the receive buffer
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._seq = 1
        self._call: _Call | None = None
        self._buf = bytearray(65536)

    async def __aenter__(self) -> RouteBatcher:
        self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Open the netlink socket; its namespace is the calling thread's, now."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                             socket.NETLINK_ROUTE)  # fmt: skip
        try:
            sock.bind((0, 0))
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            # CAP_ACK: acks carry only the request's header, not the whole request.
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            sndbuf = _set_buffer(sock, socket.SO_SNDBUF, SO_SNDBUFFORCE)
            rcvbuf = _set_buffer(sock, socket.SO_RCVBUF, SO_RCVBUFFORCE)
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(sock.fileno(), self._on_readable)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._window = max(1, min(self._max_in_flight, rcvbuf // ACK_COST))
        # A datagram larger than the send buffer fails with EMSGSIZE.
        self._per_datagram = max(1, min(self._per_datagram, self._window, sndbuf // MAX_REQUEST))
        log.debug("route batcher open: rcvbuf %d, window %d, %d per datagram", rcvbuf, self._window, self._per_datagram)

    def close(self) -> None:
        if self._sock is None:
            return
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        if self._call is not None:
            self._call.failure = ConnectionError("route batcher closed")
            self._call.wake()

    async def add(self, routes: Sequence[Route]) -> list[RouteFailure]:
        """Add `routes`; returns the ones the kernel refused, in input order."""
        return await self._run("add", routes, frozenset())

    async def delete(self, routes: Sequence[Route]) -> list[RouteFailure]:
        """Delete `routes`; a route that is already gone is not a failure."""
        return await self._run("del", routes, GONE)

    async def _run(self, op: str, routes: Sequence[Route], ignore: frozenset[int]) -> list[RouteFailure]:
        if not routes:
            return []
        async with self._lock:
            if self._sock is None:
                raise ConnectionError("route batcher is not open")
            self._on_readable()  # drop acks a cancelled call left behind
            call = self._call = _Call(self._seq, len(routes))
            self._seq = (self._seq + len(routes)) & 0xFFFFFFFF
            try:
                await self._send_all(call, op, routes)
                await self._until(call, lambda: call.acked == call.sent)
            finally:
                self._call = None
        failures = [RouteFailure(routes[i], err, text) for i, (err, text) in sorted(call.errors.items())
                    if err not in ignore]  # fmt: skip
        log.debug("route batch %s: %d routes, %d failed", op, len(routes), len(failures))
        for failure in failures:
            log.debug("route batch %s: failed %s", op, failure)
        return failures

    async def _send_all(self, call: _Call, op: str, routes: Sequence[Route]) -> None:
        step = self._per_datagram
        for start in range(0, len(routes), step):
            chunk = routes[start : start + step]
            await self._until(call, lambda: call.sent - call.acked + len(chunk) <= self._window)
            seq = call.base + start  # encoded per datagram: no long stall up front
            try:
                await self._send(b"".join([route.encode(op, (seq + i) & 0xFFFFFFFF) for i, route in enumerate(chunk)]))
            except OSError as exc:  # this datagram and the rest never reached the kernel
                log.warning("route batch %s: send failed after %d of %d: %s", op, start, len(routes), exc)
                call.fail(range(start, len(routes)), exc.errno or errno.EIO, f"not sent: {exc.strerror}")
                return
            call.sent += len(chunk)
            await asyncio.sleep(0)

    async def _until(self, call: _Call, ready: Callable[[], bool]) -> None:
        """Wait, letting the reader run, until `ready()` holds."""
        while call.failure is None and not ready():
            call.waiter = self._loop.create_future()
            await call.waiter
        if call.failure is not None:
            raise call.failure

    async def _send(self, datagram: bytes) -> None:
        for attempt in range(SEND_RETRIES + 1):
            try:
                self._sock.send(datagram)
                return
            except OSError as exc:
                # No request of a datagram refused with these was processed.
                if exc.errno not in (errno.EAGAIN, errno.ENOBUFS) or attempt == SEND_RETRIES:
                    raise
                log.debug("route batch send: %s, waiting (attempt %d)", exc, attempt + 1)
                await self._writable()
                if exc.errno == errno.ENOBUFS:  # kernel short of memory: writable says little
                    await asyncio.sleep(0.001 * (attempt + 1))

    async def _writable(self) -> None:
        waiter = self._loop.create_future()
        fd = self._sock.fileno()
        self._loop.add_writer(fd, lambda: waiter.done() or waiter.set_result(None))
        try:
            await waiter
        finally:
            self._loop.remove_writer(fd)

    def _on_readable(self) -> None:
        call, overrun = self._call, False
        while True:
            try:
                size = self._sock.recv_into(self._buf)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    log.warning("route batcher: acks dropped by the kernel (receive buffer overrun)")
                    overrun = True
                    continue
                log.error("route batcher: receive failed: %s", exc)
                if call is not None:
                    call.failure = exc
                break
            if call is not None:
                for seq, err, text in _parse_acks(self._buf, size):
                    call.ack(seq, err, text)
        if call is not None:
            if overrun:
                # Requests are processed inside send(), so with the queue now
                # empty, every ack still missing was dropped: outcome unknown.
                call.fail(range(call.sent), errno.ENOBUFS, "ack lost (receive buffer overrun), outcome unknown")
                call.acked = call.sent
            call.wake()


def _set_buffer(sock: socket.socket, option: int, force_option: int) -> int:
    """Ask for a large buffer; FORCE ignores rmem_max/wmem_max but needs CAP_NET_ADMIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, force_option, SOCKET_BUFFER)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)  # capped by the sysctl
    # The kernel doubles the value for bookkeeping; the usable part is half.
    return sock.getsockopt(socket.SOL_SOCKET, option) // 2


def _parse_acks(buf: bytearray, size: int) -> Iterator[tuple[int, int, str]]:
    """Yield (seq, errno, extack text) for each NLMSG_ERROR in one datagram."""
    for kind, flags, seq, begin, end in messages(buf, size):
        if kind == NLMSG_ERROR:
            err = error_code(buf, begin)
            yield seq, err, extack(buf, begin, end, flags) if err else ""
