"""Netlink's wire format, written once: the message header, attributes,
acks with their extended-ack text, and which errnos mean "already gone".

Three parts of netcfg speak netlink in bytes rather than through pyroute2:
the route batcher (kernel/batch.py: thousands of requests per call), the
rtnetlink watcher and its dumps (kernel/rtnl.py, watch.py, uplink.py:
thousands of notices) and the DCO generic-netlink codecs (dco/: families
pyroute2 does not know).  They share this module.  Layouts: linux/netlink.h.
"""

from __future__ import annotations

import errno
import struct
import sys
from typing import Iterator

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
ATTR = struct.Struct("=HH")  # nlattr: length, type
U32_ATTR = struct.Struct("=HHI")  # an 8-byte attribute carrying one u32
_ERRNO = struct.Struct("=i")

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400  # new requests
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200  # acks
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 1, 10, 11, 12
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

# "Already gone": a delete (of a route, address, rule, link) that meets one
# of these has nothing left to do, so teardown counts it as done.
GONE = frozenset({errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL})


def align(n: int) -> int:
    return (n + 3) & ~3


# -- messages ----------------------------------------------------------------
def messages(data, size: int | None = None) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, sequence, payload start, payload end) of each message
    in data[:size]; stops at a malformed header."""
    size = len(data) if size is None else size
    offset = 0
    while offset + HEADER.size <= size:
        length, kind, flags, seq, _port = HEADER.unpack_from(data, offset)
        if length < HEADER.size or offset + length > size:
            return
        yield kind, flags, seq, offset + HEADER.size, offset + length
        offset += align(length)


def error_code(data, begin: int) -> int:
    """The errno of an NLMSG_ERROR (or NLMSG_DONE) payload at `begin`; 0 is an ack."""
    return -_ERRNO.unpack_from(data, begin)[0]


def extack(data, begin: int, end: int, flags: int) -> str:
    """The kernel's explanation (NLMSGERR_ATTR_MSG) in the NLMSG_ERROR payload data[begin:end], or "".

    The payload is the error, the request's header, the request's payload
    unless the ack is capped (NETLINK_CAP_ACK), then the TLVs.
    """
    if not flags & NLM_F_ACK_TLVS or end - begin < 4 + HEADER.size:
        return ""
    request_length = HEADER.unpack_from(data, begin + 4)[0]
    pos = begin + 4 + (HEADER.size if flags & NLM_F_CAPPED else align(request_length))
    for kind, payload in walk(data, pos, end):
        if kind == NLMSGERR_ATTR_MSG:
            return bytes(payload).rstrip(b"\0").decode(errors="replace")
    return ""


# -- attributes --------------------------------------------------------------
def walk(data, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(type without flags, payload) of each attribute in data[start:end]; stops at a short one."""
    end = len(data) if end is None else end
    while start + 4 <= end:
        length, kind = ATTR.unpack_from(data, start)
        if length < 4 or start + length > end:
            return
        yield kind & NLA_TYPE_MASK, data[start + 4:start + length]
        start += align(length)


def attributes(data, start: int = 0, end: int | None = None) -> dict[int, bytes]:
    """type -> payload of the attributes in data[start:end] (the last of a type wins)."""
    return dict(walk(data, start, end))


def uint(payload: bytes) -> int:
    """An unsigned integer of the payload's own width (1, 2, 4 or 8 bytes:
    mainline ovpn's NLA_UINT is 4 or 8, and KEY_SWAP_NTF's key id is a u16)."""
    return int.from_bytes(payload, sys.byteorder)


def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return ATTR.pack(length, kind) + payload + b"\0" * (align(length) - length)


def u8(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=B", value))


def u16(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=H", value))


def u32(kind: int, value: int) -> bytes:
    return U32_ATTR.pack(8, kind, value)


def be16(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("!H", value))


def nest(kind: int, *children: bytes) -> bytes:
    """A nested attribute; both DCO kernels refuse one without NLA_F_NESTED."""
    return attr(kind | NLA_F_NESTED, b"".join(children))
