"""Which DCO generic-netlink family does this kernel have?  (DcoAvailable, spec 11.)

Resolving a family lets the kernel autoload its module through the
`net-pf-16-proto-16-family-<name>` alias.  The legacy out-of-tree family
comes first: openvpn3-linux up to v27 speaks it, and a kernel that has it
loaded was set up for such a client.  Mainline `ovpn` is the fallback
(spec 11 [rec]: link kind and family always as a pair, families.py).
"""

from __future__ import annotations

import errno

from ..errors import KernelRefused
from .families import FAMILIES
from .genl import GenlSocket

ORDER = ("ovpn-dco-v2", "ovpn")


async def available_family():
    """The codec of the first family the kernel resolves, or None."""
    sock = GenlSocket()
    try:
        for name in ORDER:
            try:
                await sock.resolve(name)
                return FAMILIES[name]
            except KernelRefused as e:
                if e.errno != errno.ENOENT:
                    raise
        return None
    finally:
        sock.close()


async def dco_available() -> bool:
    try:
        return await available_family() is not None
    except KernelRefused:
        return False
