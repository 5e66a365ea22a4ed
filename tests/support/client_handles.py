"""Handles on a client runner that holds its bus connection open (tests' side).

``run_client(..., hold=True)`` returns a :class:`HeldClient`,
``arun_client(..., hold=True)`` an :class:`AsyncHeldClient` (see
``client_launch.py``): the runner has done its steps and keeps its
connection and fds open until released, terminated or killed, so a test can
act while the client is "still there" and then make it go away cleanly or
abruptly.
"""

from __future__ import annotations

import asyncio
import subprocess


class HeldClient:
    """A client runner holding its connection open (sync API).

    ``results``: the per-step results; ``pid``; ``release()`` closes its
    stdin (clean disconnect, exit 0); ``terminate()`` (SIGTERM, also clean)
    and ``kill()`` (SIGKILL: the client "disappears") return the exit code.
    """

    def __init__(self, proc: subprocess.Popen, results: list[dict]) -> None:
        self.proc = proc
        self.results = results

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _finish(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        return rc

    def release(self, timeout: float = 10) -> int:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self._finish(timeout)

    def terminate(self, timeout: float = 10) -> int:
        if self.alive():
            self.proc.terminate()
        return self._finish(timeout)

    def kill(self) -> int:
        if self.alive():
            self.proc.kill()
        return self._finish(10)

    def __enter__(self) -> "HeldClient":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


class AsyncHeldClient:
    """:class:`HeldClient` for async tests: the same methods, awaitable."""

    def __init__(self, proc: asyncio.subprocess.Process, results: list[dict]) -> None:
        self.proc = proc
        self.results = results

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def _finish(self, timeout: float) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    async def release(self, timeout: float = 10) -> int:
        if self.proc.stdin and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        return await self._finish(timeout)

    async def terminate(self, timeout: float = 10) -> int:
        if self.alive():
            self.proc.terminate()
        return await self._finish(timeout)

    async def kill(self) -> int:
        if self.alive():
            self.proc.kill()
        return await self._finish(10)
