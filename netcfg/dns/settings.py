"""Per-device resolver settings and their validation (spec 7.2).

Values are checked when the method is called, not later: server addresses
must be IP literals (stored in canonical compressed form), search domains
must be DNS names.  Bounds keep one client from stalling the service (the
original takes 65-95 s over an AddDNS of 100,000 entries).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field

from ..errors import InvalidArgument, InvalidProperty
from ..kernel.ip import printable

MAX_SERVERS = 64  # per device, after de-duplication
MAX_DOMAINS = 256  # per device, after de-duplication
MAX_DOMAIN_LENGTH = 253
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")

DNSSEC_MODES = ("yes", "no", "optional")
TRANSPORT_MODES = ("plain", "dot", "doh")
SCOPES = ("global", "tunnel")


def canonical_server(text: str) -> str:
    """An IP literal in its one canonical text form (RFC 5952 for IPv6).

    Any textual IPv6 form is accepted (`::1`, `2001:db8::`, zero-padded,
    upper case, IPv4-mapped `::ffff:192.0.2.1`); the original aborted on
    several of them (spec 7.4 [quirk]).  IPv4-mapped addresses keep the
    dotted tail (RFC 5952 section 5), whatever the Python version prints.
    """
    if not isinstance(text, str) or len(text) > 64:
        raise InvalidArgument("DNS server: not an IP address (too long)")
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidArgument(f"DNS server '{printable(text)}' is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise InvalidArgument(f"DNS server '{printable(text)}': scoped addresses are not supported")
    if ip.is_unspecified or ip.is_multicast:
        raise InvalidArgument(f"DNS server '{printable(text)}' is not a unicast address")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


def server_family_bytes(canonical: str) -> tuple[int, bytes]:
    """(AF_INET or AF_INET6, packed address) of a canonical server string.

    IPv4-mapped IPv6 addresses become the IPv4 address they map: a resolver
    asked to use one talks IPv4 to that server anyway.
    """
    ip = ipaddress.ip_address(canonical)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), ip.packed


def canonical_domain(text: str) -> str:
    name = text[:-1] if text.endswith(".") and len(text) > 1 else text
    if not name or len(name) > MAX_DOMAIN_LENGTH:
        raise InvalidArgument(f"search domain '{printable(text)}' must be 1-{MAX_DOMAIN_LENGTH} characters")
    if not all(_LABEL.match(label) for label in name.split(".")):
        raise InvalidArgument(f"search domain '{printable(text)}' is not a valid DNS name")
    return name


def _merge(current: list[str], new: list[str], limit: int, what: str) -> list[str]:
    merged = list(current)
    for value in new:
        if value not in merged:
            merged.append(value)
    if len(merged) > limit:
        raise InvalidArgument(f"too many {what}: {len(merged)} (at most {limit} per device)")
    return merged


@dataclass
class ResolverSettings:
    """One device's DNS wishes.  `index` orders devices ("last connected wins")."""

    index: int
    device: str = ""  # kernel interface name once established
    scope: str = "global"
    servers: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    dnssec: str = "unset"
    transport: str = "unset"
    enabled: bool = False

    def add_servers(self, values: list[str]) -> list[str]:
        if len(values) > MAX_SERVERS:  # refuse huge input before parsing any of it
            raise InvalidArgument(f"too many DNS servers: {len(values)} (at most {MAX_SERVERS} per device)")
        self.servers = _merge(self.servers, [canonical_server(v) for v in values], MAX_SERVERS, "DNS servers")
        return self.servers

    def add_domains(self, values: list[str]) -> list[str]:
        if len(values) > MAX_DOMAINS:
            raise InvalidArgument(f"too many search domains: {len(values)} (at most {MAX_DOMAINS} per device)")
        self.domains = _merge(self.domains, [canonical_domain(v) for v in values], MAX_DOMAINS, "search domains")
        return self.domains

    def set_dnssec(self, mode: str) -> None:
        if mode not in DNSSEC_MODES:
            raise InvalidArgument(f"[SetDNSSEC] Invalid DNSSEC mode: '{printable(mode)}'")
        self.dnssec = mode

    def set_transport(self, mode: str) -> None:
        if mode not in TRANSPORT_MODES:
            raise InvalidArgument(f"[SetDNSTransport] Invalid DNS transport mode: '{printable(mode)}'")
        self.transport = mode

    def clear(self) -> None:
        self.servers, self.domains = [], []

    @property
    def has_values(self) -> bool:
        return bool(self.servers or self.domains)


def check_scope(value: str) -> str:
    if value not in SCOPES:
        raise InvalidProperty(f"[SetDNSScope] Invalid DNS Scope value: {printable(value)}")
    return value
