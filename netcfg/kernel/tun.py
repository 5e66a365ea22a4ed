"""Opening a tun/tap device: /dev/net/tun + TUNSETIFF.

We open the device ourselves (not pyroute2, which only makes persistent
devices and closes its fd, notes 2.1): the device is non-persistent, so it
lives exactly as long as some fd to it is open.  The kernel picks the name
(`tun%d`), as the original does (spec 5.4).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import struct

from ..errors import KernelRefused

TUNSETIFF = 0x400454CA
SIOCSIFTXQLEN = 0x8943
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_ONE_QUEUE = 0x2000
TUN_PATH = "/dev/net/tun"


def _open_blocking(layer: int) -> tuple[int, str]:
    flags = (IFF_TUN if layer == 3 else IFF_TAP) | IFF_NO_PI | IFF_ONE_QUEUE
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise KernelRefused("open", TUN_PATH, e.errno or errno.EIO) from None
    try:
        res = fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"", flags))
    except OSError as e:
        os.close(fd)
        raise KernelRefused("TUNSETIFF", TUN_PATH, e.errno or errno.EIO) from None
    return fd, res[:16].rstrip(b"\0").decode()


async def open_tun(layer: int) -> tuple[int, str]:
    """Create a tun (layer 3) or tap (layer 2) device; returns (fd, ifname)."""
    # ioctl on a device node may block; keep it off the event loop.
    return await asyncio.to_thread(_open_blocking, layer)
