"""Connecting to the bus, and surviving a full socket.

Both D-Bus libraries treat EAGAIN from send() as fatal and drop the whole
connection (notes 1.6.1: dbus-fast dies at ~300 back-to-back signals with 10
listeners).  We patch the writer to wait for writability instead, and set
the socket's send buffer (SO_SNDBUFFORCE, we have CAP_NET_ADMIN) to a
size that keeps method replies close behind the signals.  What we queue on
top of the library is bounded in bus/pump.py.
"""

from __future__ import annotations

import array
import asyncio
import logging
import socket

from dbus_fast import BusType
from dbus_fast.aio import MessageBus
from dbus_fast.aio import message_bus as aio_message_bus

log = logging.getLogger(__name__)

SO_SNDBUFFORCE = 32
# Whatever sits in this buffer is ahead of our next method reply in the
# daemon.  Measured (bench/FANOUT.md, 10,000 routes x 10 subscribers): the
# fan-out rate is the same from 64 KiB to 16 MiB (the daemon is the
# bottleneck), while another client's call during the burst takes, median,
# ~5 / 7 / 18 / 58 / 140 ms with 128 KiB / 256 KiB / 1 / 4 / 16 MiB.  At
# 128 KiB the daemon starts to find our socket empty when the machine is
# loaded; 256 KiB keeps a margin.  The patched writer, not the buffer
# size, is what keeps the connection alive (EAGAIN = wait).
SEND_BUFFER = 256 << 10


def _write_callback(self, remove_writer: bool = True) -> None:
    """dbus-fast's _MessageWriter.write_callback, with EAGAIN = "try later"."""
    sock = self.sock
    try:
        while True:
            if self.buf is None:
                if not self.messages:
                    if remove_writer:
                        self.loop.remove_writer(self.fd)
                    return
                buf, unix_fds, fut = self.messages.popleft()
                self.unix_fds, self.buf, self.offset, self.fut = unix_fds, memoryview(buf), 0, fut
            try:
                if self.unix_fds and self.negotiate_unix_fd:
                    ancdata = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", self.unix_fds))]
                    self.offset += sock.sendmsg([self.buf[self.offset:]], ancdata)
                    self.unix_fds = None
                else:
                    self.offset += sock.send(self.buf[self.offset:])
            except BlockingIOError:
                self.loop.add_writer(self.fd, self.write_callback)
                return
            if self.offset < len(self.buf):
                self.loop.add_writer(self.fd, self.write_callback)
                return
            self.buf = None
            aio_message_bus._future_set_result(self.fut, None)
    except Exception as e:
        if self.bus._user_disconnect:
            aio_message_bus._future_set_result(self.fut, None)
        else:
            aio_message_bus._future_set_exception(self.fut, e)
        self.bus._finalize(e)


def patch_writer() -> None:
    writer = aio_message_bus._MessageWriter
    if writer.write_callback is not _write_callback:
        writer.write_callback = _write_callback


def send_raw(bus: MessageBus, data: bytearray) -> asyncio.Future:
    """Queue already marshalled messages (serials from bus.next_serial()).

    The future resolves once every byte is in the socket, like bus.send's.
    """
    fut = bus._loop.create_future()
    bus._writer.messages.append((data, None, fut))
    bus._writer.schedule_write()  # arms the writer; it writes when the socket takes it
    return fut


async def connect(address: str | None) -> MessageBus:
    patch_writer()
    if address:
        bus = MessageBus(bus_address=address, negotiate_unix_fd=True)
    else:
        bus = MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True)
    await bus.connect()
    try:
        bus._sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SEND_BUFFER)
    except OSError as e:  # without CAP_NET_ADMIN: the patch alone still holds
        log.debug("SO_SNDBUFFORCE: %s", e)
    return bus
