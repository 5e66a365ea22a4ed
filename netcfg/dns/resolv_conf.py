"""`--resolv-conf FILE`: write the resolver file ourselves (spec 7.3).

The first write moves the user's file (or symlink) aside, recorded in the
state directory first (resolv_conf_backup.py); every write is a temporary
file + rename(2) with the original's permissions; when no VPN DNS is left,
and at shutdown, the original is renamed back.  Applied before the tun
exists ("pre", spec 5 step 1).

While we own the file, an inotify watch on its directory notices another
program rewriting it (dhcpcd, NetworkManager: upstream #121).  Its version
becomes the system part (and what is restored later), and the VPN part is
written again on top.  Two programs that keep rewriting each other's file
would loop forever; after MAX_FIGHTS rewrites within FIGHT_WINDOW seconds
we slow down to one re-apply every FIGHT_PAUSE seconds and say so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections import deque
from pathlib import Path

from ..atomic_file import write_atomically
from ..errors import BackendUnavailable
from ..inotify import DirectoryWatch
from .resolv_conf_backup import MovedAside, read_text
from .resolv_conf_format import SystemPart, generate, is_ours, parse, vpn_values
from .settings import ResolverSettings

log = logging.getLogger(__name__)

SETTLE = 0.2  # seconds to let another writer finish before we look
MAX_FIGHTS, FIGHT_WINDOW, FIGHT_PAUSE = 5, 30.0, 5.0


class ResolvConfBackend:
    name = "resolv-conf"
    stage = "pre"

    def __init__(self, path: str, state_dir: str) -> None:
        self.aside = MovedAside(path, state_dir)
        self.path: Path = self.aside.path
        self._written: str | None = None  # our last write, to tell our events from others'
        self._override: SystemPart | None = None  # set by an in-place edit of our own file
        self._active = lambda: []
        self._lock = asyncio.Lock()
        self._watch: DirectoryWatch | None = None
        self._pending: asyncio.Task | None = None
        self._dirty = False
        self._stopping = False
        self._fights: deque[float] = deque(maxlen=MAX_FIGHTS)

    def describe(self) -> str:
        return f"resolv-conf: writing {self.path} (original moved aside, recorded in {self.aside.record_path})"

    # -- lifetime --

    async def start(self, active) -> None:
        self._active = active
        async with self._lock:
            await asyncio.to_thread(self.aside.recover)
        self._watch = DirectoryWatch(str(self.path.parent), self._on_event)
        try:
            self._watch.start()
        except OSError as e:
            log.warning("cannot watch %s for changes by other programs: %s", self.path.parent, e)
            self._watch = None

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self._stopping = True
        if self._pending is not None:  # let a look in progress finish: it may be in a thread
            await asyncio.gather(self._pending, return_exceptions=True)
        async with self._lock:
            await self._run(self._restore)

    # -- applying --

    async def apply(self, active: list[ResolverSettings], changed: ResolverSettings | None) -> None:
        if changed is not None and changed.scope != "global":
            log.warning("DNS Scope change ignored. Only global scope supported (%s)", self.path)
        async with self._lock:
            await self._run(self._write_or_restore, active)

    async def revert(self, settings: ResolverSettings, active: list[ResolverSettings]) -> None:
        async with self._lock:
            await self._run(self._write_or_restore, active)

    async def _run(self, func, *args) -> None:
        try:
            await asyncio.to_thread(func, *args)
        except OSError as e:
            # e.filename: the state directory or the backup can be the culprit, not the file itself
            raise BackendUnavailable(f"DNS (resolv.conf backend): {e.filename or self.path}: {e.strerror or e}") from e

    def _write_or_restore(self, active: list[ResolverSettings]) -> None:
        if not active:
            self._restore()
            return
        moved_now = False
        if not self.aside.active:
            self.aside.move_aside()
            moved_now = True
        try:
            self._write(generate(active, self._system_part(active)))
        except OSError:
            if moved_now:  # all-or-nothing: the user's file goes back
                self._restore()
            raise

    def _system_part(self, active: list[ResolverSettings]) -> SystemPart:
        if self._override is not None:
            return self._override
        return parse(self.aside.original_text())

    def _write(self, text: str) -> None:
        record = self.aside.record
        write_atomically(self.path, text.encode("utf-8", "surrogateescape"), mode=record.mode,
                         owner=(record.uid, record.gid))
        self._written = text
        log.debug("wrote %s:\n%s", self.path, text)

    def _restore(self) -> None:
        self.aside.restore()
        self._written = None
        self._override = None

    # -- somebody else's writes --

    def _on_event(self, mask: int, name: str) -> None:
        if name != self.path.name or not self.aside.active:
            return
        self._dirty = True
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().create_task(self._check_foreign())

    async def _check_foreign(self) -> None:
        # Events keep coming while we look (our own rename among them): look
        # again until a look started after the last event.
        while self._dirty:
            self._dirty = False
            await asyncio.sleep(SETTLE)
            try:
                async with self._lock:
                    if self._stopping or not self.aside.active:
                        return
                    foreign = await asyncio.to_thread(self._adopt_foreign, self._active())
                if not foreign:
                    continue
                await self._slow_down_if_fighting()
                async with self._lock:
                    if not self._stopping and self.aside.active:
                        await asyncio.to_thread(self._write_or_restore, self._active())
            except OSError as e:
                log.error("re-applying the VPN name servers to %s after another program's change failed: %s",
                          self.path, e)

    def _adopt_foreign(self, active: list[ResolverSettings]) -> bool:
        """Look at the file; if it is not our last write, take it as the system part."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            log.warning("%s was deleted by another program while VPN DNS is active: writing it again", self.path)
            return True
        text = read_text(self.path) if stat.S_ISREG(st.st_mode) else None
        if text is not None and text == self._written:
            return False  # our own rename
        servers, domains = vpn_values(active)
        if text is not None and is_ours(text):
            # Our file edited in place: keep what was added, minus our own values.
            self._override = parse(text, skip_servers=servers, skip_domains=domains)
            log.warning("%s was edited by another program while VPN DNS is active: keeping its "
                        "changes as system settings and re-applying the VPN name servers", self.path)
        else:
            self.aside.adopt_current()
            self._override = None
            log.warning("%s was rewritten by another program while VPN DNS is active: its content is "
                        "now the system part (and what will be restored); re-applying the VPN name "
                        "servers", self.path)
        return True

    async def _slow_down_if_fighting(self) -> None:
        now = time.monotonic()
        self._fights.append(now)
        if len(self._fights) == MAX_FIGHTS and now - self._fights[0] < FIGHT_WINDOW:
            log.error("%s: another program rewrote it %d times in %.0f s; re-applying only every %.0f s",
                      self.path, MAX_FIGHTS, now - self._fights[0], FIGHT_PAUSE)
            await asyncio.sleep(FIGHT_PAUSE)
