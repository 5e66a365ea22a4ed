"""A generic-netlink socket on the event loop, for one DCO family.

Requests carry NLM_F_ACK and are matched to their answers by sequence
number, so a call awaits the kernel's verdict (with its extack text) instead
of being posted to a worker that dies at the first error, as in the
original (spec 11).  The same socket joins the family's `peers` multicast
group; notifications (sequence 0) go to a callback.  Family resolution also
lives here: DcoAvailable and EnableDCO ask the kernel the same question.
"""

from __future__ import annotations

import asyncio
import errno as errnos
import logging
import os
import socket
import struct
from typing import Callable

from ..errors import KernelRefused
from ..kernel.nlmsg import (
    HEADER, NETLINK_ADD_MEMBERSHIP, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NLM_F_ACK, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR, SOL_NETLINK, attr, attributes, error_code, extack, messages, uint, walk,
)

log = logging.getLogger(__name__)

NETLINK_GENERIC = 16
GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 0x10, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME, CTRL_ATTR_MCAST_GROUPS = 1, 2, 7
CTRL_ATTR_MCAST_GRP_NAME, CTRL_ATTR_MCAST_GRP_ID = 1, 2
GENL_HEADER = struct.Struct("=BBH")  # genlmsghdr: command, version, reserved
RCVBUF = 1 << 20  # notifications must not be lost to a burst of acks
TIMEOUT = 5.0  # a DCO request the kernel has not answered by then has failed


class _Refused(Exception):
    """The kernel's NLMSG_ERROR for one request: errno and extack text."""

    def __init__(self, code: int, extack: str) -> None:
        super().__init__(code, extack)
        self.code, self.extack = code, extack


class GenlSocket:
    def __init__(self, on_notification: Callable[[int, bytes], None] | None = None) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                  NETLINK_GENERIC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        for option in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
            self.sock.setsockopt(SOL_NETLINK, option, 1)
        self.sock.bind((0, 0))
        self.on_notification = on_notification
        self.family_id = 0
        self._seq = 0
        self._pending: dict[int, tuple[asyncio.Future, list[bytes]]] = {}
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    @classmethod
    async def open(cls, family: str, group: str | None = None,
                   on_notification: Callable[[int, bytes], None] | None = None) -> "GenlSocket":
        """Resolve `family` (ENOENT: no such module) and join its `group`."""
        self = cls(on_notification)
        try:
            self.family_id, groups = await self.resolve(family)
            if group is not None:
                self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, groups[group])
        except BaseException:
            self.close()
            raise
        return self

    async def resolve(self, family: str) -> tuple[int, dict[str, int]]:
        """(family id, {multicast group name: id}); KernelRefused(ENOENT) if absent."""
        replies = await self._call(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                                   attr(CTRL_ATTR_FAMILY_NAME, family.encode() + b"\0"), f"resolve {family}")
        top = attributes(replies[0][GENL_HEADER.size:])
        groups = {}
        for _, group in walk(top.get(CTRL_ATTR_MCAST_GROUPS, b"")):
            g = attributes(group)
            groups[g[CTRL_ATTR_MCAST_GRP_NAME].rstrip(b"\0").decode()] = uint(g[CTRL_ATTR_MCAST_GRP_ID])
        return uint(top[CTRL_ATTR_FAMILY_ID]), groups

    async def request(self, cmd: int, payload: bytes, what: str) -> list[bytes]:
        """Send one command of our family; the genl payloads of its replies
        (none for a plain ack).  KernelRefused("...", what) when refused."""
        return [r[GENL_HEADER.size:] for r in await self._call(self.family_id, cmd, payload, what)]

    async def _call(self, family_id: int, cmd: int, payload: bytes, what: str) -> list[bytes]:
        self._seq = self._seq % 0x7FFFFFFF + 1
        seq = self._seq
        body = GENL_HEADER.pack(cmd, 0, 0) + payload  # genl version 0, as libnl and OpenVPN send
        message = HEADER.pack(HEADER.size + len(body), family_id, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body
        future = self._loop.create_future()
        self._pending[seq] = (future, [])
        try:
            self.sock.send(message)
            return await asyncio.wait_for(future, TIMEOUT)
        except _Refused as e:
            op, _, obj = what.partition(" ")
            raise KernelRefused(op, obj, e.code, e.extack) from None
        except OSError as e:
            raise KernelRefused("send", what, e.errno or errnos.EIO) from None
        except TimeoutError:
            raise KernelRefused(f"no answer within {TIMEOUT:.0f} s to", what, errnos.ETIMEDOUT) from None
        finally:
            self._pending.pop(seq, None)

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as e:
                # ENOBUFS: notifications were lost; the requests still get their acks.
                log.warning("DCO netlink socket: %s", os.strerror(e.errno or 0))
                if e.errno != errnos.ENOBUFS:
                    return
                continue
            self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        for kind, flags, seq, begin, end in messages(data):
            pending = self._pending.get(seq) if seq else None
            if pending is None:
                if seq == 0 and kind == self.family_id and self.on_notification and end - begin >= GENL_HEADER.size:
                    self._notify(data[begin], data[begin + GENL_HEADER.size:end])
                continue
            future, replies = pending
            if kind == NLMSG_ERROR:
                code = error_code(data, begin)
                if not future.done():
                    if code:
                        future.set_exception(_Refused(code, extack(data, begin, end, flags)))
                    else:
                        future.set_result(replies)
            elif kind == NLMSG_DONE:
                if not future.done():
                    future.set_result(replies)
            else:
                replies.append(data[begin:end])

    def _notify(self, cmd: int, payload: bytes) -> None:
        try:
            self.on_notification(cmd, payload)
        except Exception:
            log.exception("DCO notification %d", cmd)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(_Refused(errnos.ECANCELED, "socket closed before the answer"))

