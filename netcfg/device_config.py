"""What a client asks of one device, and the bounds each value must keep.

The values arrive validated by their own types (TunnelAddress, Network,
the DNS settings); the checks here are those of the properties and of the
lists' sizes.  Only the device's Session changes its configuration
(session.py); these checks are pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InvalidArgument, InvalidProperty
from .kernel.address import TunnelAddress
from .kernel.route import Network

MAX_ADDRESSES = 64
MAX_NETWORKS = 100_000  # per device; documented in docs/api.md
MTU_RANGE = range(68, 65536)


def check_mtu(value: int) -> int:
    if value not in MTU_RANGE:
        raise InvalidProperty(f"mtu {value} is out of range {MTU_RANGE.start}-{MTU_RANGE.stop - 1}")
    return value


def check_layer(value: int) -> int:
    if value not in (2, 3):
        raise InvalidProperty(f"layer {value} is invalid: 3 (tun) or 2 (tap)")
    return value


def check_txqueuelen(value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise InvalidProperty(f"txqueuelen {value} is out of range 0-65535")
    return value


@dataclass
class DeviceConfig:
    mtu: int = 1500
    layer: int = 0
    txqueuelen: int = 0
    reroute_ipv4: bool = False
    reroute_ipv6: bool = False
    remote: str | None = None
    addresses: list[TunnelAddress] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)

    def check_room_for_address(self) -> None:
        if len(self.addresses) >= MAX_ADDRESSES:
            raise InvalidArgument(f"too many IP addresses (at most {MAX_ADDRESSES} per device)")

    def check_room_for_networks(self, count: int) -> None:
        if len(self.networks) + count > MAX_NETWORKS:
            raise InvalidArgument(
                f"too many networks: {len(self.networks)} stored + {count} new (at most {MAX_NETWORKS} per device)"
            )
