"""Netlink attributes (TLVs) for the two DCO generic-netlink families.

Written out rather than taken from pyroute2: pyroute2 knows neither family
(spec dco.md 8.3), and both kernels validate strictly: a nest must carry
NLA_F_NESTED, a u8 is exactly one byte plus padding, an unknown type is
refused.  Twenty lines of struct say that more plainly than nla_map classes.
"""

from __future__ import annotations

import struct
import sys
from typing import Iterator

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER


def _pad(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (_pad(length) - length)


def u8(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=B", value))


def u16(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=H", value))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def be16(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("!H", value))


def nest(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def parse(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type without flags, payload) for each attribute; stops at a short one."""
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4 or offset + length > len(data):
            return
        yield kind & NLA_TYPE_MASK, data[offset + 4:offset + length]
        offset += _pad(length)


def as_dict(data: bytes) -> dict[int, bytes]:
    return dict(parse(data))


def uint(payload: bytes) -> int:
    """An unsigned integer of the payload's own width (1, 2, 4 or 8 bytes:
    mainline's NLA_UINT is 4 or 8, and KEY_SWAP_NTF's key id is a u16)."""
    return int.from_bytes(payload, sys.byteorder)
