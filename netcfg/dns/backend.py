"""The one DNS backend protocol; one file per backend implements it.

Backends get plain value types (ResolverSettings), never bus types.  The
ordering policy ("last connected wins") lives in dns/order.py, not here.
"""

from __future__ import annotations

from typing import Protocol

from .settings import ResolverSettings


class DnsBackend(Protocol):
    name: str
    # "pre": applied before the tun device exists (a file), "post": needs the
    # interface (systemd-resolved).  Spec 5 steps 1 and 9.
    stage: str

    async def start(self) -> None:
        """Called once at service start: restore what a crashed run left."""

    async def apply(self, active: list[ResolverSettings]) -> None:
        """Make the resolver reflect `active` (newest device first)."""

    async def revert(self, settings: ResolverSettings) -> None:
        """Forget one device's settings (it was disabled or destroyed)."""

    async def stop(self) -> None:
        """Service shutdown: give everything back."""


class NoBackend:
    """No resolver integration: DNS calls are stored and reported, nothing applied."""

    name = "none"
    stage = "post"

    async def start(self) -> None:
        pass

    async def apply(self, active: list[ResolverSettings]) -> None:
        pass

    async def revert(self, settings: ResolverSettings) -> None:
        pass

    async def stop(self) -> None:
        pass
