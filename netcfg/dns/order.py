"""All devices' resolver settings, their order, and what goes to the backend.

"Last connected wins" (spec 7.2): the backend gets the enabled settings that
have values, newest first.  The aggregates `global_dns_servers`/`_search`
list every live device's values oldest first, without duplicates (7.5,
with the original's early-stop quirk fixed).
"""

from __future__ import annotations

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

    @property
    def configured(self) -> bool:
        return self.backend.name != "none"

    def new_settings(self) -> ResolverSettings:
        settings = ResolverSettings(next(self._index))
        self.live.append(settings)
        return settings

    def active(self) -> list[ResolverSettings]:
        return [s for s in reversed(self.live) if s.enabled and s.has_values]

    async def enable(self, settings: ResolverSettings, device: str) -> list[Change]:
        settings.device, settings.enabled = device, True
        await self.backend.apply(self.active())
        return self._changes(settings, added=True)

    async def disable(self, settings: ResolverSettings) -> list[Change]:
        """Disable: revert, report REMOVED, and clear the lists (spec 4.4)."""
        changes = self._changes(settings, added=False) if settings.enabled else []
        was_enabled, settings.enabled = settings.enabled, False
        if was_enabled:
            await self.backend.revert(settings)
            await self.backend.apply(self.active())
        settings.clear()
        return changes

    async def remove(self, settings: ResolverSettings) -> list[Change]:
        changes = await self.disable(settings)
        if settings in self.live:
            self.live.remove(settings)
        return changes

    def _changes(self, settings: ResolverSettings, added: bool) -> list[Change]:
        if not self.configured:
            return []
        server_type = ChangeType.DNS_SERVER_ADDED if added else ChangeType.DNS_SERVER_REMOVED
        search_type = ChangeType.DNS_SEARCH_ADDED if added else ChangeType.DNS_SEARCH_REMOVED
        device = settings.device if self.backend.stage == "post" else ""
        return [Change(server_type, device, {"dns_server": s}) for s in settings.servers] + [
            Change(search_type, device, {"search_domain": d}) for d in settings.domains
        ]

    def aggregate(self, attr: str) -> list[str]:
        seen: list[str] = []
        for settings in self.live:
            for value in getattr(settings, attr):
                if value not in seen:
                    seen.append(value)
        return seen
