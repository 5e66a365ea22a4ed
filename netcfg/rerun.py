"""A background job that runs again when asked: one task at a time, awaited
when it is stopped (no task is ever left pending, issue 15 item 8).

foreign.py (judging kernel notices) and kernel/follow.py (following the
uplink) each collect work while their job runs; `kick` starts the job
unless it runs already, `settle` waits until it has finished, `stop`
cancels it and waits for it to unwind, after which `kick` starts nothing.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable


class RerunJob:
    def __init__(self, job: Callable[[], Awaitable[None]]) -> None:
        self._job = job
        self._task: asyncio.Task | None = None
        self.stopped = False

    def kick(self) -> None:
        if not self.stopped and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._job())

    async def settle(self) -> None:
        """Wait until the job is not running (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        self.stopped = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._task = None
