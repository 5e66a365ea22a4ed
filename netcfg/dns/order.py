"""All devices' resolver settings, their order, and what goes to the backend.

"Last connected wins" (spec 7.2): the backend gets the enabled settings that
have values, newest first.  The aggregates `global_dns_servers`/`_search`
list every live device's values oldest first, without duplicates (7.5,
with the original's early-stop quirk fixed: each device's REMOVED events
are produced by its own disable/remove, exactly once, whatever older
devices are still up).

Failures: `enable` is all-or-nothing.  If the backend refuses, the settings
go back to their previous state, the backend is asked to give back what it
may have half-applied, and the error is raised for Establish to roll back.
`withdraw`/`disable`/`remove` always complete (they are on the teardown
path, which must not stop half-way): a backend failure there is logged as
an error, and `remove` returns it for the teardown's report.
"""

from __future__ import annotations

import asyncio
import logging
from itertools import count

from ..events import Change, ChangeType
from .backend import DnsBackend, NoBackend
from .settings import ResolverSettings

log = logging.getLogger(__name__)


class DnsManager:
    def __init__(self, backend: DnsBackend | None = None) -> None:
        self.backend: DnsBackend = backend or NoBackend()
        self._index = count(1)
        self.live: list[ResolverSettings] = []  # creation order
        # One backend change at a time: apply/revert of different devices
        # must not interleave (a file is rewritten as a whole).
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return self.backend.name != "none"

    async def start(self) -> None:
        """Start the backend; a failure here is logged, never fatal (upstream #88, #124)."""
        log.debug("DNS backend: %s", self.backend.describe())  # the choice itself: dns/select.py, once
        try:
            await self.backend.start(self.active)
        except Exception as e:
            log.error("DNS backend %s: start-up failed (DNS calls will report why): %s", self.backend.name, e)

    async def stop(self) -> bool:
        """Shutdown: the backend gives everything back.  False (logged) if it could not."""
        try:
            await self.backend.stop()
        except Exception as e:
            log.error("DNS backend %s: giving back the resolver configuration failed: %s", self.backend.name, e)
            return False
        return True

    def new_settings(self) -> ResolverSettings:
        settings = ResolverSettings(next(self._index))
        self.live.append(settings)
        return settings

    def active(self) -> list[ResolverSettings]:
        """What the backend must reflect: enabled settings with values, newest first."""
        return [s for s in reversed(self.live) if s.enabled and s.has_values]

    async def enable(self, settings: ResolverSettings, device: str) -> list[Change]:
        """Apply one device's settings; raises (and changes nothing) on failure."""
        async with self._lock:
            before = settings.device, settings.enabled
            settings.device, settings.enabled = device, True
            try:
                await self.backend.apply(self.active(), settings)
            except BaseException:
                settings.device, settings.enabled = before
                await self._give_back(settings, was_enabled=before[1])
                raise
            log.debug("DNS settings #%d enabled on '%s': servers %s, domains %s, scope %s",
                      settings.index, device, settings.servers, settings.domains, settings.scope)
            return self._changes(settings, added=True)

    async def _give_back(self, settings: ResolverSettings, was_enabled: bool) -> None:
        try:
            if was_enabled:
                await self.backend.apply(self.active(), settings)
            else:
                await self.backend.revert(settings, self.active())
        except Exception as e:
            log.error("DNS: could not give back the settings of device #%d after a failure: %s", settings.index, e)

    async def withdraw(self, settings: ResolverSettings) -> list[Change]:
        """Stop applying one device's settings, keeping its lists (Establish rollback)."""
        return (await self._revert(settings))[0]

    async def _revert(self, settings: ResolverSettings) -> tuple[list[Change], list[Exception]]:
        async with self._lock:
            if not settings.enabled:
                return [], []
            changes = self._changes(settings, added=False)
            settings.enabled = False
            try:
                await self.backend.revert(settings, self.active())
            except Exception as e:
                log.error("DNS: reverting the settings of '%s' failed: %s", settings.device or f"#{settings.index}", e)
                return changes, [e]
            return changes, []

    async def disable(self, settings: ResolverSettings) -> list[Change]:
        """Disable: revert, report REMOVED, and clear the lists (spec 4.4)."""
        changes = await self.withdraw(settings)
        settings.clear()
        return changes

    async def remove(self, settings: ResolverSettings) -> tuple[list[Change], list[Exception]]:
        """Destroy: as disable, and forget the device (REMOVED exactly once).
        The changes, and what the backend failed to give back."""
        try:
            changes, errors = await self._revert(settings)
        finally:
            settings.clear()
            if settings in self.live:
                self.live.remove(settings)
        return changes, errors

    def _changes(self, settings: ResolverSettings, added: bool) -> list[Change]:
        if not self.configured:
            return []
        server_type = ChangeType.DNS_SERVER_ADDED if added else ChangeType.DNS_SERVER_REMOVED
        search_type = ChangeType.DNS_SEARCH_ADDED if added else ChangeType.DNS_SEARCH_REMOVED
        # Spec 8: the device is "" for a backend applied before the tun exists.
        device = settings.device if self.backend.stage == "post" else ""
        return [Change(server_type, device, {"dns_server": s}) for s in settings.servers] + [
            Change(search_type, device, {"search_domain": d}) for d in settings.domains
        ]

    def aggregate(self, attr: str) -> list[str]:
        """`global_dns_servers` / `global_dns_search`: oldest device first, no duplicates."""
        seen: dict[str, None] = {}
        for settings in self.live:
            for value in getattr(settings, attr):
                seen.setdefault(value, None)
        return list(seen)
