"""IP addresses on a tun device: the value type, its validation, apply/remove.

`TunnelAddress` is what AddIPAddress stores; `from_wire` validates at call
time (the original only failed later, inside Establish, spec 2.2).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from ..errors import KernelRefused
from .ip import check_prefix, parse_ip
from .kinds import Kind, register
from .netlink import refused
from .nlmsg import GONE


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


async def remove(nl, objs: list[AddressOnLink]) -> list[tuple[AddressOnLink, KernelRefused]]:
    """Delete each address ("already gone" is done); go on past a refusal, report them."""
    failed = []
    for obj in objs:
        a = obj.address
        try:
            async with refused("delete", obj, ignore=GONE):
                await nl.ipr.addr("del", index=obj.ifindex, address=a.address, prefixlen=a.prefix)
        except KernelRefused as e:
            failed.append((obj, e))
    return failed


class AddressKind(Kind[AddressOnLink]):
    name, type = "address", AddressOnLink
    fields = ("ifindex", "address", "prefix", "gateway", "ipv6")  # the TunnelAddress flattened

    def values(self, objs: list[AddressOnLink]) -> list[tuple]:
        return [(o.ifindex, o.address.address, o.address.prefix, o.address.gateway, o.address.ipv6) for o in objs]

    def build(self, values: tuple) -> AddressOnLink:
        ifindex, *address = values
        return AddressOnLink(ifindex, TunnelAddress(*address))

    def from_fields(self, fields: dict) -> AddressOnLink:
        if isinstance(fields.get("address"), dict):  # a journal of before the flat columns
            return AddressOnLink(fields["ifindex"], TunnelAddress(**fields["address"]))
        return self.build(tuple(fields[f] for f in self.fields))

    async def create(self, nl, objs: list[AddressOnLink]) -> list[tuple[AddressOnLink, Exception]]:
        return await add(nl, objs)

    async def remove(self, nl, objs: list[AddressOnLink]) -> list[tuple[AddressOnLink, KernelRefused]]:
        return await remove(nl, objs)

    def observed_key(self, obj: AddressOnLink) -> tuple:
        a = obj.address
        return ("address", obj.ifindex, a.address, a.prefix, a.ipv6)

    def link_of(self, obj: AddressOnLink) -> int:
        return obj.ifindex


ADDRESSES = register(AddressKind())
