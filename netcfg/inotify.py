"""inotify(7) through ctypes, read by the asyncio loop: one directory, or many files.

`DirectoryWatch` follows resolv.conf's directory (dns/resolv_conf.py);
`FileWatches` follows many files on one descriptor (the `cgroup.events`
of split tunnelling's cgroups, netcfg/split/cgroups.py).

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
    return [(mask, name) for _wd, mask, name in _parse(data)]


def _parse(data: bytes) -> list[tuple[int, int, str]]:
    events, pos = [], 0
    while pos + _EVENT.size <= len(data):
        wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
        pos += _EVENT.size
        name = data[pos:pos + length].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        pos += length
        events.append((wd, mask, name))
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
        _close(self)


def _close(watch) -> None:
    """Stop reading a watch's inotify descriptor and close it (idempotent)."""
    if watch.fd >= 0:
        if watch._loop is not None:
            watch._loop.remove_reader(watch.fd)
        os.close(watch.fd)
        watch.fd = -1


class FileWatches:
    """Many watched files on one inotify descriptor, read by the loop.

    `add(path, on_event)` calls `on_event(mask)` for each event on that
    file until `remove(path)`; a file that goes away ends its watch
    (IN_IGNORED) by itself.
    """

    def __init__(self, mask: int = IN_MODIFY) -> None:
        self.mask = mask
        self.fd = -1
        self._by_wd: dict[int, tuple[str, Callable[[int], None]]] = {}
        self._by_path: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.fd = _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._readable)

    def add(self, path: str, on_event: Callable[[int], None]) -> None:
        wd = _check(_libc.inotify_add_watch(self.fd, os.fsencode(path), self.mask), f"inotify_add_watch {path}")
        self._by_wd[wd] = (path, on_event)
        self._by_path[path] = wd

    def remove(self, path: str) -> None:
        wd = self._by_path.pop(path, None)
        if wd is not None and self._by_wd.pop(wd, None) is not None:
            _libc.inotify_rm_watch(self.fd, wd)  # EINVAL if the kernel ended it already: fine

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return
        for wd, mask, _name in _parse(data):
            path, on_event = self._by_wd.get(wd, (None, None))
            if on_event is None:
                continue
            if mask & IN_IGNORED:
                del self._by_wd[wd]
                self._by_path.pop(path, None)
            on_event(mask)

    def close(self) -> None:
        _close(self)
        self._by_wd.clear()
        self._by_path.clear()
