"""libnftables, through the nftables project's own Python binding (JSON API).

This is what firewalld uses.  The binding is `nftables.py` of the nftables
source tree: pure Python over ctypes, loading `libnftables.so.1`.  It is
not on PyPI (what is there are unofficial copies), so it comes from the
distribution: Debian's `python3-nftables` (with `libnftables1`), installed
by scripts/setup.sh.  A venv made from another interpreter (CI's, pyenv's)
does not see Debian's dist-packages, and adding all of that directory to
the path would shadow our pinned dependencies with Debian's older ones; so
if `import nftables` fails we load that one package from where the
distributions put it (`binding()`).  Why not a raw netlink encoder of our
own: nf_tables' netlink messages are a bytecode whose evaluation rules
(sets, intervals, dependencies) libnftables implements; re-implementing
them is exactly the hand-rolling the project avoids (docs/leak-protection.md).

Calls into libnftables block (netlink round trips, JSON parsing in C), so
`Nft` runs them on one dedicated thread: the event loop never waits, and
the library's context is never used by two threads at once.
"""

from __future__ import annotations

import asyncio
import errno as errnos
import glob
import importlib.util
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Callable, TypeVar

from ..errors import KernelRefused, NetcfgError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Where distributions install the binding's package (Debian/Ubuntu first).
SEARCH = ("/usr/lib/python3/dist-packages", "/usr/lib/python3.*/site-packages",
          "/usr/lib64/python3.*/site-packages", "/usr/local/lib/python3*/dist-packages")

# strerror text -> errno: libnftables reports refusals as text only.
_ERRNO_BY_TEXT = sorted(((os.strerror(e), e) for e in errnos.errorcode), key=lambda p: -len(p[0]))


class NftablesUnavailable(NetcfgError):
    """libnftables or its Python binding is not installed."""


_binding: ModuleType | None = None


def binding() -> ModuleType:
    """The `nftables` module: imported normally, else from a distribution's directory."""
    global _binding
    if _binding is not None:
        return _binding
    try:
        import nftables  # noqa: PLC0415  (optional: only leak protection needs it)
    except ImportError:
        nftables = _load_from_distribution()
    _binding = nftables
    return nftables


def _load_from_distribution() -> ModuleType:
    for pattern in SEARCH:
        for base in sorted(glob.glob(pattern)):
            init = os.path.join(base, "nftables", "__init__.py")
            if os.path.isfile(init):
                spec = importlib.util.spec_from_file_location(
                    "nftables", init, submodule_search_locations=[os.path.dirname(init)])
                module = importlib.util.module_from_spec(spec)
                sys.modules["nftables"] = module  # its __init__ imports .nftables
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules["nftables"]
                    raise
                log.debug("nftables binding loaded from %s", init)
                return module
    raise NftablesUnavailable(
        "the nftables Python binding is not installed (Debian: apt-get install python3-nftables)")


def errno_of(text: str) -> int:
    """The errno whose strerror() the library's message contains, 0 if none."""
    for message, number in _ERRNO_BY_TEXT:
        if message in text:
            return number
    return 0


class Nft:
    """One libnftables context on its own thread.

    `thread_init` runs first on that thread; the tests use it to step into
    a network namespace, because libnftables' netlink socket lives in the
    namespace of the thread that opens it.
    """

    def __init__(self, thread_init: Callable[[], None] | None = None) -> None:
        self._thread_init = thread_init
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="nft")
        self._ctx = None
        self.known: dict = {}  # table -> what this context last made it hold (kernel/nft.py)

    def _open(self):
        # On the thread, at its first batch: a failure reaches the caller
        # (a pool initializer's failure would only break the pool).
        if self._thread_init is not None:
            self._thread_init()
            self._thread_init = None
        try:
            return binding().Nftables()
        except OSError as e:  # ctypes: libnftables.so.1 missing
            raise NftablesUnavailable(f"libnftables cannot be loaded: {e}") from None

    async def call(self, fn: Callable[..., T], *args) -> T:
        """Run `fn(*args)` on this context's thread: several batches with nothing in between."""
        return await asyncio.get_running_loop().run_in_executor(self._open_pool(), fn, *args)

    async def run(self, op: str, obj: object, commands: list[dict]) -> list[dict]:
        """Run one batch (one nftables transaction); its JSON output items."""
        return await self.call(self.execute, op, obj, commands)

    def execute(self, op: str, obj: object, commands: list[dict]) -> list[dict]:
        """Run one batch, on this context's thread only (inside `call`).

        A refusal is KernelRefused(op, obj, errno, the library's error lines).
        """
        if self._ctx is None:
            self._ctx = self._open()
        try:
            rc, output, error = self._ctx.json_cmd({"nftables": commands})
        except ValueError as e:  # libnftables 1.0.6 writes broken JSON for some tables (`flags owner`)
            raise KernelRefused(op, obj, 0, f"libnftables answered with unreadable JSON ({e})") from None
        if rc != 0:
            lines = [line.strip() for line in error.splitlines() if line.startswith("Error")]
            raise KernelRefused(op, obj, errno_of(error), " ".join(lines) or error.strip()[:300])
        return output.get("nftables", []) if isinstance(output, dict) else []

    def execute_script(self, op: str, obj: object, text: str) -> None:
        """Run one batch written in nft's language (kernel/nftscript.py), on this
        context's thread only; one transaction, refusals as in `execute`."""
        if self._ctx is None:
            self._ctx = self._open()
        rc, _output, error = self._ctx.cmd(text)
        if rc != 0:
            lines = [line.strip() for line in error.splitlines() if line.startswith("Error")]
            raise KernelRefused(op, obj, errno_of(error), " ".join(lines) or error.strip()[:300])

    def _open_pool(self) -> ThreadPoolExecutor:
        # Never None: run_in_executor(None) would run on the loop's default
        # pool, whose threads may be in another network namespace.
        if self._pool is None:
            raise RuntimeError("the libnftables context is closed")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._ctx = None

