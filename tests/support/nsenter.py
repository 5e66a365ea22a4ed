"""Step a thread into a network namespace (Python 3.11 has no os.setns).

A socket's or a netlink context's namespace is fixed when it is made, from
the making thread's namespace; afterwards it works from any thread.  So:

* ``in_netns(name, fn, *args)`` runs ``fn`` on a short-lived thread inside
  the namespace and returns its result (sockets made there stay there);
* ``inside(name)`` switches the calling thread for a block (no awaits in it);
* ``enter(name)`` moves the *calling* thread for good: for a dedicated
  worker thread's initializer (``netcfg.kernel.libnft.Nft(thread_init=...)``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from typing import Callable, Iterator, TypeVar

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def enter(name: str) -> None:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def in_netns(name: str, fn: Callable[..., T], *args) -> T:
    result: list = []

    def body() -> None:
        try:
            enter(name)
            result.append((True, fn(*args)))
        except BaseException as e:  # re-raised in the caller's thread
            result.append((False, e))

    thread = threading.Thread(target=body, name=f"in-{name}")  # ends in the namespace, and is gone
    thread.start()
    thread.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """The calling thread in the namespace for the block, then back (no awaits inside)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter(name)
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's namespace")
    finally:
        os.close(home)
