"""Which programs run outside the tunnel or only inside it: our cgroup subtree.

::

    BASE/                     (netcfg.service's own cgroup, or /netcfg: cgroups.py)
      bypass/                 matched by `socket cgroupv2 level N "…/bypass"`
        4242/                 one leaf per placed program: it and its later children
      vpn-only/
        4300/

A program is placed by writing its pid into a new leaf below its mode's
group.  The nftables rules match the mode's group, at its level, so every
leaf below it matches too, and the rules never change when programs come
and go.  The leaf remembers where the program was (`origin`), so taking it
out again (`place(pid, None)`) or tearing everything down puts it back
there.  When a leaf empties (the program and its children exited), the
kernel flips `populated` in its cgroup.events; an inotify watch on the
event loop sees that and the leaf is removed.

What moves: the one process (all its threads).  Children it forks *later*
are born in its leaf; children it already has stay where they are.  Its
sockets keep the cgroup they were made in: connections it has open keep
their path, new ones take the new one.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import logging
import os
from dataclasses import dataclass

from ..errors import KernelRefused, NotAuthorized
from ..inotify import FileWatches
from .cgroups import ROOT, Group, Hierarchy
from .target import ROOT_UID, Target, authorize

log = logging.getLogger(__name__)


class Mode(enum.Enum):
    BYPASS = "bypass"  # leaves by the uplink, as if no VPN were up
    VPN_ONLY = "vpn-only"  # only through a tunnel, never the uplink


@dataclass(frozen=True)
class CgroupMatch:
    """What a `socket cgroupv2` rule needs of a mode's group (rules.py)."""

    level: int
    path: str  # as nft names it: relative to /sys/fs/cgroup
    id: int  # the cgroup's id: a group made anew is another cgroup to the rule


@dataclass(frozen=True)
class Leaf:
    group: Group
    mode: Mode
    placed_by: int  # the UID that placed the program: a user may not undo root's placement


class Placements:
    def __init__(self, hierarchy: Hierarchy, base: str) -> None:
        self.hierarchy, self.base = hierarchy, base.rstrip("/")
        self.modes = {mode: Group(f"{self.base}/{mode.value}") for mode in Mode}
        self.leaves: dict[str, Leaf] = {}  # path -> leaf
        self.lock = asyncio.Lock()
        self._made_base = False
        self._watches = FileWatches()
        self._pending: set[asyncio.Task] = set()

    # -- life cycle -----------------------------------------------------
    async def start(self) -> None:
        """Create (or adopt) the base and the mode groups; adopt leaves a crashed run left."""
        async with self.lock:
            self._made_base = not self.hierarchy.exists(self.base)
            await asyncio.to_thread(self._create_groups)
            self._watches.start()
            for mode, group in self.modes.items():
                for name in sorted(os.listdir(self.hierarchy.dir(group.path))):
                    if os.path.isdir(os.path.join(self.hierarchy.dir(group.path), name)):
                        self._adopt(Leaf(Group(f"{group.path}/{name}"), mode, ROOT_UID))

    def _create_groups(self) -> None:
        if self._made_base:
            self.hierarchy.create(Group(self.base))
        for group in self.modes.values():
            self.hierarchy.create(group)

    async def close(self) -> list[Exception]:
        """Every program back where it came from, every cgroup of ours gone; the errors."""
        self._watches.close()
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        async with self.lock:
            groups = [leaf.group for leaf in self.leaves.values()] + list(self.modes.values())
            if self._made_base:
                groups.append(Group(self.base))
            self.leaves.clear()
            errors = []
            for group in groups:
                try:
                    await asyncio.to_thread(self.hierarchy.remove, group)
                except KernelRefused as e:
                    log.warning("split tunnelling: %s", e)
                    errors.append(e)
            return errors

    def match(self, mode: Mode) -> CgroupMatch:
        path = self.modes[mode].path
        return CgroupMatch(Hierarchy.level(path), self.hierarchy.nft_path(path), self.hierarchy.id(path))

    # -- placing programs -----------------------------------------------
    async def place(self, pid: int, mode: Mode | None, caller_uid: int) -> str:
        """Put process `pid` in `mode` (None: back where it was before we placed
        it), if `caller_uid` may move it; the cgroup it is in now."""
        async with self.lock:
            with Target.open(pid) as target:
                authorize(caller_uid, target)
                current = self._leaf_holding(target.cgroup)
                if current is not None and current.placed_by == ROOT_UID and caller_uid != ROOT_UID:
                    raise NotAuthorized(f"{target} was placed in {current.mode.value} by root; only root may move it")
                origin = current.group.origin if current else self._origin(target.cgroup)
                if mode is None:
                    where = await asyncio.to_thread(self.hierarchy.release, pid, origin)
                else:
                    leaf = Leaf(Group(self._leaf_path(mode, pid), origin), mode, caller_uid)
                    await asyncio.to_thread(self._enter, leaf, pid)
                    self._adopt(leaf)
                    where = leaf.group.path
                if not target.alive():  # exited meanwhile: the pid we wrote may not have been its
                    log.info("%s exited while it was being moved", target)
                log.info("%s: %s (asked by uid %d)", target,
                         f"now in {where}" if mode else f"back in {where}", caller_uid)
                return where

    def _enter(self, leaf: Leaf, pid: int) -> None:
        self.hierarchy.create(leaf.group)
        try:
            self.hierarchy.attach(leaf.group.path, pid)
        except KernelRefused:
            self.hierarchy.remove(leaf.group)
            raise

    def _leaf_holding(self, cgroup: str) -> Leaf | None:
        for path, leaf in self.leaves.items():
            if cgroup == path or cgroup.startswith(path + "/"):
                return leaf
        return None

    def _origin(self, cgroup: str) -> str:
        # A process in our tree but in no leaf of ours (someone wrote it
        # into a mode group directly) came from nowhere we know.
        return ROOT if cgroup == self.base or cgroup.startswith(self.base + "/") else cgroup

    def _leaf_path(self, mode: Mode, pid: int) -> str:
        parent = self.modes[mode].path
        name, n = str(pid), 1
        while f"{parent}/{name}" in self.leaves or self.hierarchy.exists(f"{parent}/{name}"):
            n += 1
            name = f"{pid}-{n}"
        return f"{parent}/{name}"

    # -- leaves that empty ------------------------------------------------
    def _adopt(self, leaf: Leaf) -> None:
        path = leaf.group.path
        self.leaves[path] = leaf
        try:
            self._watches.add(os.path.join(self.hierarchy.dir(path), "cgroup.events"), lambda _mask: self._changed(path))
        except OSError as e:
            log.warning("cannot watch %s (%s); it is removed at shutdown", leaf.group, e)
        self._changed(path)  # it may be empty already (the program exited before the watch)

    def _changed(self, path: str) -> None:
        if path in self.leaves and not self.hierarchy.populated(path):
            task = asyncio.get_running_loop().create_task(self._drop(path))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _drop(self, path: str) -> None:
        async with self.lock:
            leaf = self.leaves.get(path)
            if leaf is None or self.hierarchy.populated(path):
                return
            self._watches.remove(os.path.join(self.hierarchy.dir(path), "cgroup.events"))
            try:
                await asyncio.to_thread(self.hierarchy.remove, leaf.group)
            except KernelRefused as e:
                if e.errno != errno.EBUSY:  # EBUSY: a process came in meanwhile; its exit brings us back
                    log.warning("split tunnelling: %s", e)
                self._watches.add(os.path.join(self.hierarchy.dir(path), "cgroup.events"),
                                  lambda _mask: self._changed(path))
                return
            del self.leaves[path]
            log.info("%s is empty (its programs exited): removed", leaf.group)
