"""What kernel/watch.py reports: one small value per rtnetlink notification.

Listeners (foreign changes, uplink following) see these, never netlink
messages; kernel/rtnl.py builds them from the messages of a notification or
a dump.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class LinkNotice:
    added: bool  # False: the link is gone
    ifindex: int
    ifname: str
    up: bool = True  # IFF_UP (administratively up)


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
