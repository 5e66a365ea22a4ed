"""`--dns-backend none`: DNS calls are stored and reported, nothing is applied.

The spec's "no resolver configured" case (7.1): the device methods succeed,
the aggregates still list the values, no DNS events are sent.
"""

from __future__ import annotations


class NoBackend:
    name = "none"
    stage = "post"

    def describe(self) -> str:
        return "none: DNS settings are stored but not applied"

    async def start(self, active) -> None:
        pass

    async def apply(self, active, changed) -> None:
        pass

    async def revert(self, settings, active) -> None:
        pass

    async def stop(self) -> None:
        pass
