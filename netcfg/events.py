"""Network change events: plain values the core reports; bus/signals.py sends them.

Types, bit values and detail keys are the original's (spec 8); `origin` is
ours: "netcfg" for what we did, "external" for changes made by others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntFlag


class ChangeType(IntFlag):
    DEVICE_ADDED = 1
    DEVICE_REMOVED = 2
    IPADDR_ADDED = 4
    IPADDR_REMOVED = 8
    ROUTE_ADDED = 16
    ROUTE_REMOVED = 32
    ROUTE_EXCLUDED = 64
    DNS_SERVER_ADDED = 128
    DNS_SERVER_REMOVED = 256
    DNS_SEARCH_ADDED = 512
    DNS_SEARCH_REMOVED = 1024


ALL_TYPES = 2047


@dataclass(frozen=True, slots=True)
class Change:
    type: ChangeType
    device: str
    details: dict[str, str] = field(default_factory=dict)
    origin: str = "netcfg"


def address_details(address: str, prefix: int, ipv6: bool) -> dict[str, str]:
    # `prefix` is the deprecated twin of `prefix_size`, kept for v27 clients.
    return {"ip_address": address, "prefix": str(prefix), "prefix_size": str(prefix), "ip_version": "6" if ipv6 else "4"}


def route_details(subnet: str, prefix: int, ipv6: bool, gateway: str | None = None) -> dict[str, str]:
    details = {"ip_version": "6" if ipv6 else "4", "subnet": subnet, "prefix": str(prefix), "prefix_size": str(prefix)}
    if gateway is not None:  # ROUTE_ADDED / ROUTE_EXCLUDED only (spec 8)
        details["gateway"] = gateway
    return details


class EventSink:
    """What the core is given to report changes; the bus supplies the real one."""

    def wants(self, type_: ChangeType) -> bool:  # pragma: no cover - interface
        return False

    def emit(self, path: str, change: Change) -> None:  # pragma: no cover - interface
        pass

