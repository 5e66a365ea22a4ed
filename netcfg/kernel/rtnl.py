"""rtnetlink messages, parsed with struct into kernel/notices.py's value types.

An Establish of 10,000 routes is followed by 10,000 RTM_NEWROUTE
notifications (and a Destroy by as many RTM_DELROUTE).  pyroute2 spends
~100 us decoding each, which kept the loop from sending the very events
those routes produce; these parsers read only the fields the notices carry
(~5 us).  Dumps (`dump`) come back as the same messages: kernel/watch.py's
resync and kernel/uplink.py's reading of the main table use them too.
Layouts: linux/rtnetlink.h, linux/if_addr.h, linux/fib_rules.h; the
netlink framing itself is kernel/nlmsg.py's.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from typing import AsyncIterator

from .nlmsg import (
    ATTR, HEADER, NETLINK_GET_STRICT_CHK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, SOL_NETLINK,
    U32_ATTR, align, attributes, error_code, messages,
)
from .notices import AddressNotice, LinkNotice, Notice, RouteNotice, RuleNotice

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 16, 17, 18, 20, 21, 22
RTM_GETROUTE = 26
RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWRULE, RTM_DELRULE = 24, 25, 32, 33
IFF_UP = 0x1

_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex
_U32 = struct.Struct("=I")

RTN_UNICAST = 1

IFLA_IFNAME = 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 6, 9, 15
FRA_PRIORITY, FRA_FWMARK, FRA_TABLE = 6, 10, 15


def _ip(family: int, raw: bytes | None) -> str | None:
    return socket.inet_ntop(family, raw) if raw else None


def _u32(raw: bytes | None) -> int | None:
    return _U32.unpack(raw[:4])[0] if raw else None


def dump_request(msg_type: int, seq: int) -> bytes:
    """A dump of every link (RTM_GETLINK), address or route, all families.

    The replies are RTM_NEW* messages, parsed like notifications.
    """
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) if msg_type == RTM_GETLINK else bytes([socket.AF_UNSPEC]) + bytes(3)
    return HEADER.pack(HEADER.size + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def route_dump_request(seq: int, family: int, table: int, route_type: int = RTN_UNICAST) -> bytes:
    """A dump of one table's routes of one family, filtered by the kernel.

    The filter (rtm_table and RTA_TABLE, rtm_type) only holds on a socket
    with NETLINK_GET_STRICT_CHK (`dump_socket`, Linux 4.20+); elsewhere the
    kernel sends every table and type, so readers check both themselves.
    """
    body = (_RTMSG.pack(family, 0, 0, 0, table if table < 256 else 0, 0, 0, route_type, 0)
            + U32_ATTR.pack(8, RTA_TABLE, table))
    return HEADER.pack(HEADER.size + len(body), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def dump_socket(strict: bool = True) -> socket.socket:
    """A non-blocking rtnetlink socket for dumps, in the calling thread's network namespace.

    `strict`: ask for NETLINK_GET_STRICT_CHK, so the kernel applies the
    filters of a dump request; a kernel without it dumps everything.
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                         socket.NETLINK_ROUTE)
    try:
        if strict:
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            except OSError:
                pass  # before 4.20: unfiltered dumps, still correct
        sock.bind((0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


class DumpRefused(OSError):
    """The kernel answered a dump request with an error (the dump is over)."""


async def dump(sock: socket.socket, request: bytes) -> AsyncIterator[tuple[int, bytes, int, int]]:
    """Send a dump request on `sock` and yield (type, datagram, payload start, payload end) of its messages.

    The kernel's refusal (NLMSG_ERROR, or an error in NLMSG_DONE) raises
    DumpRefused; the socket is then ready for the next request.  Otherwise
    read the dump to its end: what is left on the socket would be taken
    for the next dump's answer.
    """
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, request)
    while True:
        data = await loop.sock_recv(sock, 1 << 20)
        for kind, _flags, _seq, begin, end in messages(data):
            if kind in (NLMSG_DONE, NLMSG_ERROR):
                code = error_code(data, begin) if end - begin >= 4 else 0
                if code > 0:
                    raise DumpRefused(code, os.strerror(code))
                return
            yield kind, data, begin, end


def parse(kind: int, data: bytes, start: int, end: int) -> Notice | None:
    if kind in (RTM_NEWROUTE, RTM_DELROUTE):
        return _route(kind == RTM_NEWROUTE, data, start, end)
    if kind in (RTM_NEWADDR, RTM_DELADDR):
        return _address(kind == RTM_NEWADDR, data, start, end)
    if kind in (RTM_NEWLINK, RTM_DELLINK):
        return _link(kind == RTM_NEWLINK, data, start, end)
    if kind in (RTM_NEWRULE, RTM_DELRULE):
        return _rule(kind == RTM_NEWRULE, data, start, end)
    return None


def _link(added: bool, data: bytes, start: int, end: int) -> LinkNotice:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, start)
    attrs = attributes(data, start + _IFINFOMSG.size, end)
    name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
    return LinkNotice(added, index, name, bool(flags & IFF_UP))


def _address(added: bool, data: bytes, start: int, end: int) -> AddressNotice:
    family, prefix, _flags, _scope, index = _IFADDRMSG.unpack_from(data, start)
    attrs = attributes(data, start + _IFADDRMSG.size, end)
    # IPv4: IFA_LOCAL is the address itself (IFA_ADDRESS is the peer on a
    # point-to-point link); IPv6 only sends IFA_ADDRESS.
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    return AddressNotice(added, index, _ip(family, raw) or "", prefix, family == socket.AF_INET6)


def route_family(data: bytes, start: int) -> int:
    """rtm_family of a route message."""
    return data[start]


def route_protocol(data: bytes, start: int) -> int:
    """rtm_protocol of a route message, without decoding the rest."""
    return data[start + 5]


def route_type(data: bytes, start: int) -> int:
    """rtm_type of a route message (RTN_UNICAST, RTN_BLACKHOLE, ...)."""
    return data[start + 7]


def route_oif(data: bytes, start: int, end: int) -> int | None:
    """RTA_OIF of a route message (None for a multipath route), found without decoding the rest."""
    offset = start + _RTMSG.size
    while offset + 4 <= end:
        length, kind = ATTR.unpack_from(data, offset)
        if length < 4:
            break
        if kind == RTA_OIF:
            return _U32.unpack_from(data, offset + 4)[0]
        offset += align(length)
    return None


def _route(added: bool, data: bytes, start: int, end: int) -> RouteNotice:
    family, dst_len, _src, _tos, table, proto, _scope, _type, _flags = _RTMSG.unpack_from(data, start)
    attrs = attributes(data, start + _RTMSG.size, end)
    ipv6 = family == socket.AF_INET6
    dst = _ip(family, attrs.get(RTA_DST)) or ("::" if ipv6 else "0.0.0.0")
    oif, gateway = _u32(attrs.get(RTA_OIF)), _ip(family, attrs.get(RTA_GATEWAY))
    if oif is None and RTA_MULTIPATH in attrs:  # first hop, as `ip route` shows it
        hops = attrs[RTA_MULTIPATH]
        length, _f, _h, oif = _RTNEXTHOP.unpack_from(hops, 0)
        gateway = _ip(family, attributes(hops, _RTNEXTHOP.size, length).get(RTA_GATEWAY))
    return RouteNotice(added, ipv6, dst, dst_len, oif, gateway, _u32(attrs.get(RTA_PRIORITY)),
                       _u32(attrs.get(RTA_TABLE)) or table, proto)


def _rule(added: bool, data: bytes, start: int, end: int) -> RuleNotice:
    family, _dst, _src, _tos, table, _r1, _r2, _action, _flags = _RTMSG.unpack_from(data, start)
    attrs = attributes(data, start + _RTMSG.size, end)
    return RuleNotice(added, family == socket.AF_INET6, _u32(attrs.get(FRA_PRIORITY)), _u32(attrs.get(FRA_FWMARK)),
                      _u32(attrs.get(FRA_TABLE)) or table)
