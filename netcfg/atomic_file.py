"""Replacing a file so that nobody ever sees half of it: the one way netcfg
writes the files it must find again (the journal in --state-dir,
resolv.conf and its backup record, the systemd-resolved record).

The sequence (what systemd's networkd does for its state files, and what
the ext4/XFS documentation asks of an application that wants its data to
survive a power cut): a temporary file in the same directory, its data
fsync'ed, renamed over the target (atomic for every reader), then the
directory fsync'ed so that the rename itself is on disk.  Readers, a crash
of the service, and a crash of the machine all see the old content or the
new one, never a mix and never an empty file.

For a file whose whole job ends with the machine (the journal in
--state-dir: it lists kernel objects, and a power cut removes them all),
`defer_sync` reorders the steps: the rename comes right after the write
(a crash of the service finds the new file), and the two fsyncs are left
to the caller (`sync_deferred`), who runs them when nothing waits on them.
The file is then whole on disk a little later rather than before the
caller goes on: an fsync on a busy ext4 waits for the commit of
everyone's writes, measured at 10-200 ms here, and the journal is written
before every Establish (bench/journal.py, bench/run.py --against).

Blocking: call it from a worker thread (asyncio.to_thread, or the
journal's writer thread), never on the event loop.
"""

from __future__ import annotations

import os
from pathlib import Path

TEMP_SUFFIX = ".netcfg-tmp"


def temp_path(path: Path) -> Path:
    """Where `write_atomically` stages `path` (hidden, next to it)."""
    return path.with_name(f".{path.name}{TEMP_SUFFIX}")


def write_atomically(path: str | os.PathLike, data: bytes, *, mode: int = 0o600,
                     owner: tuple[int, int] | None = None, defer_sync: list[int] | None = None) -> None:
    """Replace `path` by `data`: temporary file, fsync, rename, fsync of the directory.

    `mode` and `owner` (uid, gid; kept as ours when we may not chown) are
    the new file's.  The file itself is replaced, never followed: a symlink
    at `path` is replaced by a regular file.  One writer per path at a
    time (callers serialise: the temporary's name is fixed).  An OSError
    names `path`, the file the admin knows, not the temporary.
    `defer_sync`: rename at once, and append the file's still open fd to
    this list instead of the fsyncs (see above; `sync_deferred` does them).
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            try:
                os.fchown(fd, *owner)
            except PermissionError:  # not root: the file stays ours
                pass
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if defer_sync is None:
            os.fsync(fd)
        os.rename(tmp, path)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    if defer_sync is not None:
        defer_sync.append(fd)
        return
    os.close(fd)
    fsync_directory(path.parent)


def sync_deferred(fds: list[int], directory: str | os.PathLike) -> None:
    """The fsyncs `write_atomically(..., defer_sync=fds)` left: each file's,
    then the directory's; the fds are closed.  Every fd is closed even if
    an fsync fails; the first failure is raised."""
    error: OSError | None = None
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as e:
            error = error or e
        finally:
            os.close(fd)
    fsync_directory(directory)
    if error is not None:
        raise error


def fsync_directory(path: str | os.PathLike) -> None:
    """Make a rename (or a removal) in `path` durable.  A directory that is gone has nothing to sync."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
