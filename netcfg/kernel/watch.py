"""rtnetlink notifications: what changes in the kernel, whoever changed it.

One socket subscribed to link, address, route and rule groups, with a large
receive buffer (SO_RCVBUFFORCE): the default one overflows under route
floods (notes 2.4).  On overflow (ENOBUFS) the socket is re-created and
listeners get a `Resync`, after which they must re-read what they care about.
Notifications are turned into small value types here, so listeners (event
reporting, uplink following) never see netlink messages.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Callable, Union

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV4_RULE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE,
    RTMGRP_IPV6_RULE, RTMGRP_LINK,
)

log = logging.getLogger(__name__)

SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 32 << 20
GROUPS = (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
          | RTMGRP_IPV4_RULE | RTMGRP_IPV6_RULE)


@dataclass(frozen=True, slots=True)
class LinkNotice:
    added: bool  # False: the link is gone
    ifindex: int
    ifname: str


@dataclass(frozen=True, slots=True)
class AddressNotice:
    added: bool
    ifindex: int
    address: str
    prefix: int
    ipv6: bool


@dataclass(frozen=True, slots=True)
class RouteNotice:
    added: bool
    ipv6: bool
    dst: str
    prefix: int
    oif: int | None
    gateway: str | None
    metric: int | None
    table: int
    proto: int


@dataclass(frozen=True, slots=True)
class RuleNotice:
    added: bool
    ipv6: bool
    priority: int | None
    fwmark: int | None
    table: int


@dataclass(frozen=True, slots=True)
class Resync:
    """Notifications were lost: re-read the kernel."""


Notice = Union[LinkNotice, AddressNotice, RouteNotice, RuleNotice, Resync]


def _route(msg, added: bool) -> RouteNotice:
    ipv6 = msg["family"] == socket.AF_INET6
    dst = msg.get("dst") or ("::" if ipv6 else "0.0.0.0")
    table = msg.get("table") or msg["table"]
    oif, gateway = msg.get("oif"), msg.get("gateway")
    if not oif and msg.get("multipath"):
        oif, gateway = msg.get("multipath")[0]["oif"], msg.get("multipath")[0].get("gateway")
    return RouteNotice(added, ipv6, str(ipaddress.ip_address(dst)), msg["dst_len"], oif, gateway,
                       msg.get("priority"), table, msg["proto"])


def decode(msg) -> Notice | None:
    event = msg.get("event")
    if event in ("RTM_NEWLINK", "RTM_DELLINK"):
        return LinkNotice(event == "RTM_NEWLINK", msg["index"], msg.get("ifname") or "")
    if event in ("RTM_NEWADDR", "RTM_DELADDR"):
        return AddressNotice(event == "RTM_NEWADDR", msg["index"], msg.get("address") or "", msg["prefixlen"],
                             msg["family"] == socket.AF_INET6)
    if event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
        return _route(msg, event == "RTM_NEWROUTE")
    if event in ("RTM_NEWRULE", "RTM_DELRULE"):
        return RuleNotice(event == "RTM_NEWRULE", msg["family"] == socket.AF_INET6, msg.get("priority"),
                          msg.get("fwmark"), msg.get("table") or msg["table"])
    return None


class KernelWatch:
    def __init__(self) -> None:
        self.listeners: list[Callable[[Notice], None]] = []
        self._task: asyncio.Task | None = None
        self._ipr: AsyncIPRoute | None = None

    def subscribe(self, listener: Callable[[Notice], None]) -> None:
        self.listeners.append(listener)

    async def start(self) -> None:
        await self._open()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._ipr:
            self._ipr.close()
            self._ipr = None

    async def _open(self) -> None:
        self._ipr = AsyncIPRoute()
        await self._ipr.bind(groups=GROUPS)
        try:
            self._ipr.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError as e:
            log.warning("rtnetlink receive buffer stays small (%s): expect resyncs under route floods", e)

    async def _run(self) -> None:
        while True:  # AsyncIPRoute.get() yields one datagram's messages, then ends (notes 2.4)
            try:
                async for msg in self._ipr.get():
                    notice = decode(msg)
                    if notice is not None:
                        self._tell(notice)
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    log.error("rtnetlink watch stopped: %s", e)
                    return
                log.warning("rtnetlink notifications overflowed: resynchronising")
                self._ipr.close()
                await self._open()
                self._tell(Resync())

    def _tell(self, notice: Notice) -> None:
        for listener in self.listeners:
            try:
                listener(notice)
            except Exception:
                log.exception("kernel watch listener failed on %s", notice)
