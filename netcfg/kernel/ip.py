"""IP literals and prefixes: parsing in a stated family, with errors that name the value."""

from __future__ import annotations

import ipaddress

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
