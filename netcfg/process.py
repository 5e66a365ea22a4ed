"""Is a client process still alive?  Asked of the kernel through a pidfd.

Why not the bus: when a client dies, the kernel closes its tun fd (and so
deletes the tun link) before the process is reaped, and the rtnetlink
notice of that can reach us before dbus-daemon's NameOwnerChanged does.
The process's exit is the fact that decides whether the link "went with
its client" (our cleanup follows) or was removed by someone else.
"""

from __future__ import annotations

import asyncio
import os


async def has_exited(pid: int, within: float) -> bool:
    """True when `pid` is gone now or exits within `within` seconds.

    A pidfd becomes readable once the process has exited (zombie or
    reaped).  Where pidfds are unavailable (kernel < 5.3, seccomp) the
    answer is False: the caller treats the process as alive.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    try:
        loop.add_reader(fd, lambda: exited.done() or exited.set_result(True))
        try:
            return await asyncio.wait_for(exited, within)
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


def command_name(pid: int) -> str:
    """The process's command name (/proc/PID/comm), "" when it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""
