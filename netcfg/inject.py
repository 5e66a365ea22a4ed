"""Test points: named places where a test may make the service fail or pause.

Some failures cannot be provoked from outside (a DNS backend or a DCO
channel failing in the middle of a teardown), and some interleavings
cannot be timed from outside (SIGTERM while a ProtectSocket is between
reading the uplink and adding its route).  At those places the code calls
`point(NAME)`.  Nothing is armed unless the service's environment says so:

    NETCFG_INJECT="fail:teardown.dns,pause:protect.route"

`fail:NAME` makes the point raise InjectedFailure; `pause:NAME` makes it log
"test point NAME: paused" and wait until the service gets SIGUSR2.  Each is
used once, the first time the point is reached.  Unarmed, a point is one
set lookup.  Tests in the service's own process arm them with `arm`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

log = logging.getLogger(__name__)

ENV = "NETCFG_INJECT"


class InjectedFailure(Exception):
    """A failure a test asked for at a test point."""


_armed: dict[str, str] = {}  # point -> "fail" | "pause"
_paused: list[asyncio.Future] = []


def arm(action: str, name: str) -> None:
    if action not in ("fail", "pause"):
        raise ValueError(f"test point action {action!r}: fail or pause")
    _armed[name] = action


def arm_from_environment(loop: asyncio.AbstractEventLoop) -> None:
    """Arm what NETCFG_INJECT asks for; SIGUSR2 then resumes paused points."""
    spec = os.environ.get(ENV, "")
    for item in filter(None, (part.strip() for part in spec.split(","))):
        action, _, name = item.partition(":")
        arm(action, name)
    if _armed:
        log.info("test points armed (%s=%s): this service is under test", ENV, spec)
        loop.add_signal_handler(signal.SIGUSR2, resume)


def resume() -> None:
    """Let every paused point go on."""
    while _paused:
        waiter = _paused.pop()
        if not waiter.done():
            waiter.set_result(None)


async def point(name: str) -> None:
    if name not in _armed:
        return
    action = _armed.pop(name)
    if action == "fail":
        log.info("test point %s: failing", name)
        raise InjectedFailure(f"test point {name}: injected failure")
    waiter = asyncio.get_running_loop().create_future()
    _paused.append(waiter)
    log.info("test point %s: paused", name)
    await waiter
    log.info("test point %s: resumed", name)
