"""The one DNS backend protocol; one file per backend implements it.

Backends get plain value types (ResolverSettings), never bus types.  The
ordering policy ("last connected wins") lives in dns/order.py, not here.

A backend that talks to a D-Bus service (systemd-resolved) is given a
`BusCaller`: a small object built in bus/ (bus/resolver_calls.py) that
makes one method call and reports D-Bus errors as `BusCallError`, so no
module under dns/ imports the bus library.

Error contract: `apply` raises (a NetcfgError, normally BackendUnavailable
or a subclass) when the settings of the device that caused the call could
not be applied, and leaves the resolver as it was for that device, so
Establish can fail and roll back (issue 6).  Failures that concern only
other devices are logged by the backend, not raised.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Protocol

from ..errors import BackendUnavailable
from .none import NoBackend
from .settings import ResolverSettings

__all__ = ["ActiveSettings", "BusCallError", "BusCaller", "DnsBackend", "NoBackend"]

ActiveSettings = Callable[[], "list[ResolverSettings]"]
"""What the DnsManager hands to `start`: returns the current active list."""


class BusCallError(BackendUnavailable):
    """A D-Bus call of a backend failed: the error name and text from the bus."""

    def __init__(self, what: str, name: str, text: str) -> None:
        self.what, self.name, self.text = what, name, text
        super().__init__(f"{what}: {name}: {text}" if text else f"{what}: {name}")


class BusCaller(Protocol):
    """Method calls and name watching on the bus the service is connected to."""

    async def call(self, destination: str, path: str, interface: str, member: str,
                   signature: str = "", body: list | None = None) -> list:
        """The reply body; a D-Bus error reply raises BusCallError."""

    async def has_owner(self, name: str) -> bool:
        """Whether a well-known name has an owner right now."""

    async def activatable(self, name: str) -> bool:
        """Whether the bus can start a service for the name (a .service file)."""

    async def watch(self, name: str, callback: Callable[[bool], Awaitable[None] | None]) -> None:
        """Call `callback(True)` when `name` gains an owner, `callback(False)` when it loses it."""


class DnsBackend(Protocol):
    name: str
    # "pre": applied before the tun device exists (a file), "post": needs the
    # interface (systemd-resolved, openresolv).  Spec 5 steps 1 and 9.
    stage: str

    def describe(self) -> str:
        """One line for the log: what the backend manages and where."""

    async def start(self, active: ActiveSettings) -> None:
        """Called once at service start: restore what a crashed run left, start
        watching.  `active()` returns the settings to re-apply whenever the
        backend has to re-sync on its own (resolved reappeared, file rewritten)."""

    async def apply(self, active: list[ResolverSettings], changed: ResolverSettings | None) -> None:
        """Make the resolver reflect `active` (enabled settings with values,
        newest device first).  `changed` is the device this call is for: its
        failure raises; None means re-sync everything."""

    async def revert(self, settings: ResolverSettings, active: list[ResolverSettings]) -> None:
        """`settings` is no longer active (disabled or destroyed); `active` is
        what remains.  Gives back what was applied for it."""

    async def stop(self) -> None:
        """Service shutdown: give everything back, stop watching."""
