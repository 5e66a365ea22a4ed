"""inotify(7) through ctypes, read by the asyncio loop: watch one directory.

Why not a package: asyncinotify (maintained, ctypes-based itself) and
inotify_simple would do, but what we need is one non-blocking fd, one watch
and a parser for `struct inotify_event`, read by the loop when the fd is
readable: fewer lines than the dependency would cost us in pins and
packaging (Debian 12 ships neither as a package).  pyinotify is out: it is
built on asyncore, which Python 3.12 removed.

We watch the directory, not the file: programs replace resolv.conf by
rename (IN_MOVED_TO), write it in place (IN_CLOSE_WRITE), delete it, or
turn it into a symlink (IN_CREATE), and a watch on the file itself would
follow the old inode away after a rename.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct
from typing import Callable

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

FILE_CHANGES = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of name

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def parse_events(data: bytes) -> list[tuple[int, str]]:
    """(mask, name) of each event in one read."""
    events, pos = [], 0
    while pos + _EVENT.size <= len(data):
        _wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
        pos += _EVENT.size
        name = data[pos:pos + length].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        pos += length
        events.append((mask, name))
    return events


class DirectoryWatch:
    """Calls `on_event(mask, name)` on the loop for changes inside `directory`."""

    def __init__(self, directory: str, on_event: Callable[[int, str], None], mask: int = FILE_CHANGES) -> None:
        self.directory = directory
        self.on_event = on_event
        self.mask = mask
        self.fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        fd = _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        try:
            _check(_libc.inotify_add_watch(fd, os.fsencode(self.directory), self.mask | IN_ONLYDIR),
                   f"inotify_add_watch {self.directory}")
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return
        for mask, name in parse_events(data):
            self.on_event(mask, name)

    def close(self) -> None:
        if self.fd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
