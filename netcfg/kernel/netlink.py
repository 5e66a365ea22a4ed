"""The service's rtnetlink handles, opened once in the service's namespace.

pyroute2's AsyncIPRoute does single objects (links, addresses, lookups);
routes go through our batched sender, since pyroute2 manages only ~3,000
routes/s (notes 2.3).  Errors become KernelRefused with errno and extack.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import KernelRefused
from .batch import RouteBatcher


class Netlink:
    def __init__(self) -> None:
        self.ipr: AsyncIPRoute | None = None
        self.routes: RouteBatcher | None = None

    async def open(self) -> "Netlink":
        self.ipr = AsyncIPRoute()
        self.routes = RouteBatcher()
        await self.routes.__aenter__()
        return self

    async def close(self) -> None:
        if self.routes is not None:
            await self.routes.__aexit__(None, None, None)
            self.routes = None
        if self.ipr is not None:
            self.ipr.close()
            self.ipr = None


@asynccontextmanager
async def refused(op: str, obj: object, ignore: frozenset[int] = frozenset()):
    """Turn pyroute2's NetlinkError into KernelRefused (or nothing if ignored)."""
    try:
        yield
    except NetlinkError as e:
        if e.code in ignore:
            return
        raise KernelRefused(op, obj, e.code, getattr(e, "extack", "") or "") from None
