"""A process someone asks to move, pinned, and who may move it.

The caller names a process by its pid.  A pid is only a number: the
process may exit and the number go to another one between our check and
our move.  So the process is pinned first with a pidfd, its facts are read
from /proc through a directory descriptor opened after the pidfd, and the
pidfd is asked afterwards whether the process is still alive: if it is,
the /proc directory was its own (a live process keeps its pid), and the
facts are its facts.  After the move the pidfd is asked again (`alive`).

Who may move it (`authorize`): root may move any process; any other user
only a process whose real, effective and saved UIDs are all the caller's
UID.  The caller's UID comes from the bus daemon's credentials of the
caller's connection (phase 2: bus/access.py), never from the call's
arguments.  A set-UID program a user started (effective UID root) is not
that user's to move; neither is a process another user owns, nor a
program root placed (`Placements` checks who placed it).
"""

from __future__ import annotations

import os
import select
import signal
from dataclasses import dataclass

from ..errors import InvalidArgument, NotAuthorized, NotFound
from .cgroups import cgroup_in

ROOT_UID = 0


@dataclass
class Target:
    pid: int
    pidfd: int
    uids: tuple[int, int, int]  # real, effective, saved
    cgroup: str  # its path in the unified hierarchy, when it was pinned
    name: str = ""

    @classmethod
    def open(cls, pid: int) -> "Target":
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise InvalidArgument(f"'{pid}' is not a process id")
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise NotFound(f"no process {pid}") from None
        try:
            try:
                proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise NotFound(f"no process {pid}") from None
            try:
                status, cgroup = _read(proc, "status"), _read(proc, "cgroup")
            finally:
                os.close(proc)
            target = cls(pid, pidfd, _uids(status), cgroup_in(cgroup), _field(status, "Name"))
            if not target.alive():
                raise NotFound(f"process {pid} exited")
            if _field(status, "Kthread") == "1":
                raise InvalidArgument(f"process {pid} is a kernel thread")
            return target
        except BaseException:
            os.close(pidfd)
            raise

    def alive(self) -> bool:
        """Not exited (a pidfd turns readable when its process exits)."""
        if select.select([self.pidfd], [], [], 0)[0]:
            return False
        try:
            signal.pidfd_send_signal(self.pidfd, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, not ours to signal (never for root)
            pass
        return True

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __str__(self) -> str:
        return f"process {self.pid} ({self.name})" if self.name else f"process {self.pid}"


def authorize(caller_uid: int, target: Target) -> None:
    """Raise NotAuthorized unless `caller_uid` may move `target` (module doc)."""
    if caller_uid == ROOT_UID:
        return
    if any(uid != caller_uid for uid in target.uids):
        raise NotAuthorized(f"{target} does not belong to user {caller_uid}: only its owner or root may move it")


def _read(dirfd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        return os.read(fd, 65536).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _field(status: str, key: str) -> str:
    for line in status.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def _uids(status: str) -> tuple[int, int, int]:
    uid = _field(status, "Uid").split()
    if len(uid) < 3:
        raise NotFound("the process's /proc status has no Uid line")
    return int(uid[0]), int(uid[1]), int(uid[2])
