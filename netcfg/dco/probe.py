"""Is a DCO generic-netlink family available?  (DcoAvailable, spec 11.)

Resolving the family lets the kernel autoload the module through its
`net-pf-16-proto-16-family-<name>` alias.  Both the legacy out-of-tree
family and the mainline one count.
"""

from __future__ import annotations

import asyncio
import logging

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

log = logging.getLogger(__name__)

FAMILIES = ("ovpn-dco-v2", "ovpn")


def _resolve(name: str) -> bool:
    sock = GenericNetlinkSocket()
    try:
        sock.bind(name, None)
        return True
    except NetlinkError:
        return False
    except Exception as e:  # pyroute2 raises others on odd kernels
        log.debug("resolving %s: %s", name, e)
        return False
    finally:
        sock.close()


async def available_family() -> str | None:
    for name in FAMILIES:
        if await asyncio.to_thread(_resolve, name):
            return name
    return None


async def dco_available() -> bool:
    """DcoAvailable.  False while this build cannot create DCO devices: a
    client that hears "true" calls EnableDCO instead of falling back to tun,
    so answering from the kernel alone would break its connection."""
    return DCO_SUPPORTED and await available_family() is not None


DCO_SUPPORTED = False  # EnableDCO is not implemented yet (bus/device.py)
