"""rtnetlink notifications: what changes in the kernel, whoever changed it.

One socket subscribed to link, address, route and rule groups, with a large
receive buffer (SO_RCVBUFFORCE): the default one overflows under route
floods (notes 2.4).  On overflow (ENOBUFS) listeners get a `Resync`, after
which they must re-read what they care about.  Notifications are turned
into small value types here (parsed by kernel/rtnl.py), so listeners (event
reporting, uplink following) never see netlink messages.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Callable

from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV4_RULE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE,
    RTMGRP_IPV6_RULE, RTMGRP_LINK,
)

from . import rtnl
from .nlmsg import messages
from .notices import AddressNotice, LinkNotice, Notice, Resync, RouteNotice, RuleNotice
from .route import RTPROT_NETCFG

__all__ = ["AddressNotice", "KernelWatch", "LinkNotice", "Notice", "Resync", "RouteNotice", "RuleNotice"]

log = logging.getLogger(__name__)

SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 32 << 20
GROUPS = (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
          | RTMGRP_IPV4_RULE | RTMGRP_IPV6_RULE)




class KernelWatch:
    def __init__(self) -> None:
        self.listeners: list[Callable[[Notice], None]] = []
        self._sock: socket.socket | None = None
        self._dumper: socket.socket | None = None
        self._reading = False
        self._seq = 0
        self._dumping = asyncio.Lock()  # one dump at a time on the socket

    def subscribe(self, listener: Callable[[Notice], None]) -> None:
        self.listeners.append(listener)

    def open(self) -> None:
        """Open the socket in the calling thread's network namespace."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                             socket.NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError as e:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            log.warning("rtnetlink receive buffer stays small (%s): expect resyncs under route floods", e)
        sock.bind((0, GROUPS))
        self._sock = sock
        # Dumps (resync) go through their own socket, in the same namespace.
        self._dumper = rtnl.dump_socket(strict=False)  # whole-kernel dumps: no filter to check

    async def start(self) -> None:
        if self._sock is None:
            self.open()
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._readable)
        self._reading = True

    async def stop(self) -> None:
        if self._sock is not None:
            if self._reading:
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
                self._reading = False
            self._sock.close()
            self._dumper.close()
            self._sock = self._dumper = None

    async def dump(self, links: bool = True, addresses: bool = True, routes: bool = True) -> list[Notice]:
        """What the kernel has now: links, addresses, routes, as added notices."""
        async with self._dumping:
            return await self._dump(links, addresses, routes)

    async def _dump(self, links: bool, addresses: bool, routes: bool) -> list[Notice]:
        found: list[Notice] = []
        wanted = ((rtnl.RTM_GETLINK, links, "links"), (rtnl.RTM_GETADDR, addresses, "addresses"),
                  (rtnl.RTM_GETROUTE, routes, "routes"))
        for request, what in ((kind, what) for kind, want, what in wanted if want):
            self._seq += 1
            try:
                async for kind, buf, begin, end in rtnl.dump(self._dumper, rtnl.dump_request(request, self._seq)):
                    notice = rtnl.parse(kind, buf, begin, end)
                    if notice is not None:
                        found.append(notice)
            except rtnl.DumpRefused as e:
                # What came before the refusal is kept: a short answer, as before.
                log.warning("rtnetlink dump of %s refused: %s", what, e)
        return found

    def _readable(self) -> None:
        # A bounded number of datagrams per call: the loop serves bus calls
        # between them during a flood of route notifications.
        for _ in range(256):
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    log.error("rtnetlink watch stopped: %s", e)
                    asyncio.get_running_loop().remove_reader(self._sock.fileno())
                    self._reading = False
                    return
                # The socket stays usable; what overflowed is lost.
                log.warning("rtnetlink notifications overflowed: resynchronising")
                self._tell(Resync())
                continue
            for kind, _flags, _seq, begin, end in messages(data):
                if kind == rtnl.RTM_NEWROUTE and rtnl.route_protocol(data, begin) == RTPROT_NETCFG:
                    # Our own adds (an Establish sends thousands): no listener
                    # wants them, so they are not even decoded.
                    continue
                notice = rtnl.parse(kind, data, begin, end)
                if notice is not None:
                    self._tell(notice)

    def _tell(self, notice: Notice) -> None:
        for listener in self.listeners:
            try:
                listener(notice)
            except Exception:
                log.exception("kernel watch listener failed on %s", notice)
