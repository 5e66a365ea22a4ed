"""IP addresses on a tun device: the value type, its validation, apply/remove.

`TunnelAddress` is what AddIPAddress stores; `from_wire` validates at call
time (the original only failed later, inside Establish, spec 2.2).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from ..errors import InvalidArgument

MAX_TEXT = 256  # longest IP literal we even look at


def family_name(ipv6: bool) -> str:
    return "IPv6" if ipv6 else "IPv4"


def parse_ip(text: str, ipv6: bool, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an IP literal that must be of the stated family."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise InvalidArgument(f"{what}: not an IP address (too long)")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"{what}: '{printable(text)}' is not a valid {family_name(ipv6)} address") from None
    if (ip.version == 6) != ipv6:
        raise InvalidArgument(
            f"{what}: '{printable(text)}' is an {family_name(ip.version == 6)} address, but ipv6={str(ipv6).lower()}"
        )
    return ip


def check_prefix(prefix: int, ipv6: bool, what: str) -> int:
    limit = 128 if ipv6 else 32
    if not 0 <= prefix <= limit:
        raise InvalidArgument(f"{what}: prefix size {prefix} is out of range 0-{limit} for {family_name(ipv6)}")
    return prefix


def printable(text: str, limit: int = 64) -> str:
    """Quote a caller's string safely in an error message or log line."""
    out = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text[:limit])
    return out + ("..." if len(text) > limit else "")


@dataclass(frozen=True, slots=True)
class TunnelAddress:
    """One AddIPAddress entry: address/prefix on the tun, plus its VPN gateway."""

    address: str  # canonical text form
    prefix: int
    gateway: str  # canonical text, or "" when none was given
    ipv6: bool

    @classmethod
    def from_wire(cls, address: str, prefix: int, gateway: str, ipv6: bool) -> "TunnelAddress":
        ip = parse_ip(address, ipv6, "ip_address")
        check_prefix(prefix, ipv6, "prefix_size")
        gw = str(parse_ip(gateway, ipv6, "gateway")) if gateway else ""
        return cls(str(ip), prefix, gw, ipv6)

    @property
    def family(self) -> int:
        return socket.AF_INET6 if self.ipv6 else socket.AF_INET

    @property
    def broadcast(self) -> str | None:
        if self.ipv6 or self.prefix >= 31:
            return None
        return str(ipaddress.ip_interface(f"{self.address}/{self.prefix}").network.broadcast_address)

    def __str__(self) -> str:
        return f"{self.address}/{self.prefix}"


@dataclass(frozen=True, slots=True)
class AddressOnLink:
    """A kernel address object: identity is (family, address, prefix, ifindex)."""

    ifindex: int
    address: TunnelAddress

    def __str__(self) -> str:
        return f"address {self.address} dev #{self.ifindex}"


async def add(nl, objs: list[AddressOnLink]) -> list[tuple[AddressOnLink, Exception]]:
    """Add addresses one by one (a tunnel has few); report refusals."""
    from .netlink import refused
    from ..errors import KernelRefused

    failed = []
    for obj in objs:
        a = obj.address
        extra = {"broadcast": a.broadcast} if a.broadcast else {}
        if a.ipv6:
            extra["flags"] = 0x02 | 0x80  # IFA_F_NODAD | IFA_F_PERMANENT: usable at once
        try:
            async with refused("add", obj):
                await nl.ipr.addr("add", index=obj.ifindex, address=a.address, prefixlen=a.prefix, **extra)
        except KernelRefused as e:
            failed.append((obj, e))
    return failed


async def remove(nl, objs: list[AddressOnLink]) -> None:
    from .netlink import GONE, refused

    for obj in objs:
        a = obj.address
        async with refused("delete", obj, ignore=GONE):
            await nl.ipr.addr("del", index=obj.ifindex, address=a.address, prefixlen=a.prefix)
