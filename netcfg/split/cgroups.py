"""The cgroup v2 hierarchy, and cgroups of ours as kernel objects.

Split tunnelling places programs in cgroups of ours; nftables then tells
their sockets apart by `socket cgroupv2` (netcfg/split/rules.py).  This
module knows where the unified hierarchy is mounted, where our subtree
goes, and how one of our cgroups is created and removed.

Where our subtree goes (`default_base`):

* **under systemd**: the service's own cgroup (`/system.slice/netcfg.service`),
  which systemd delegates to it (`Delegate=yes` in systemd/netcfg.service).
  systemd's rule is that nobody else creates cgroups outside a delegated
  subtree, the root above all (docs/split-tunnel.md quotes it);
* **without systemd**: `/netcfg`, directly below the root of the hierarchy.

Identity of a `Group` is its path in the hierarchy (as /proc/PID/cgroup
shows it).  `create` makes the directory (an existing one is adopted: a
crashed run's, which the journal names).  `remove` moves every process
still inside back to the group's `origin` (where they were before we
placed them), or to the root when the origin is gone or refuses them
(a systemd scope is removed once empty; a slice with controllers takes no
processes), and then removes the directory; "already gone" is done.

nftables resolves a cgroup's path when the rule is loaded, and only below
/sys/fs/cgroup (nftables src/datatype.c, `cgroupv2_type_parse`): on a
hybrid system the unified hierarchy is /sys/fs/cgroup/unified, so the path
nft is given is "unified/netcfg/bypass" while the level (the depth the
kernel compares at) is 2.  The rule holds the cgroup's id (its inode
number), so a group removed and made again is a different cgroup to the
rule: whoever re-creates one re-installs the rules (`Group.id`).
"""

from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass

from ..errors import KernelRefused, NetcfgError

log = logging.getLogger(__name__)

SYS_FS_CGROUP = "/sys/fs/cgroup"  # where nft looks cgroup paths up
NO_SYSTEMD_BASE = "/netcfg"
ROOT = "/"
_EVACUATE_ROUNDS = 50  # a process may fork while we move its family out


class CgroupsUnavailable(NetcfgError):
    """No cgroup v2 hierarchy to place programs in (or not one nftables can name)."""


def cgroup2_mount(mountinfo: str) -> str | None:
    """The mount point of the unified hierarchy, from /proc/self/mountinfo's text.

    Both layouts systemd knows: "unified" (cgroup2 at /sys/fs/cgroup: Debian
    12, Fedora, any systemd >= 247 by default) and "hybrid" (v1 controllers
    in a tmpfs at /sys/fs/cgroup, cgroup2 at /sys/fs/cgroup/unified: older
    systemd, and machines without systemd that mount it there, like our
    test machines).  Only a mount of the hierarchy's root counts (field 4
    is "/"; a bind mount of a subtree is not the hierarchy).  Preferred:
    the one at or below /sys/fs/cgroup, where nft finds cgroups.
    """
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        fstype = line.split(" - ", 1)[1].split()[0]
        if fstype == "cgroup2" and fields[3] == "/":
            points.append(_unescape(fields[4]))
    under = [p for p in points if p == SYS_FS_CGROUP or p.startswith(SYS_FS_CGROUP + "/")]
    return (under or points or [None])[0]


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def cgroup_in(proc_cgroup: str) -> str:
    """The unified-hierarchy path in the text of /proc/PID/cgroup ("0::/path")."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].removesuffix(" (deleted)") or ROOT
    raise CgroupsUnavailable("the process is in no cgroup v2 (no '0::' line in /proc/PID/cgroup)")


def default_base(systemd: bool, own: str) -> str:
    """Where our subtree goes: the service's own (delegated) cgroup under
    systemd, /netcfg without it."""
    if systemd and own != ROOT:
        return own
    return NO_SYSTEMD_BASE


def systemd_running() -> bool:
    """What sd_booted(3) checks."""
    return os.path.isdir("/run/systemd/system")


@dataclass(frozen=True)
class Group:
    """A cgroup of ours.  Identity: its path in the hierarchy."""

    path: str
    origin: str = ROOT  # where its processes go when it is removed

    def __str__(self) -> str:
        return f"cgroup {self.path}"


class Hierarchy:
    """The unified hierarchy mounted at `mount`: paths, ids, processes (blocking calls)."""

    def __init__(self, mount: str) -> None:
        self.mount = mount.rstrip("/") or "/"

    @classmethod
    def find(cls, mountinfo: str | None = None) -> "Hierarchy":
        """The hierarchy this system has mounted (`mountinfo`: that file's text, else ours)."""
        if mountinfo is None:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
                mountinfo = f.read()
        mount = cgroup2_mount(mountinfo)
        if mount is None:
            raise CgroupsUnavailable("no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)")
        return cls(mount)

    def dir(self, path: str) -> str:
        return self.mount + (path if path != ROOT else "")

    def nft_path(self, path: str) -> str:
        """The path `socket cgroupv2` rules name the cgroup by (relative to /sys/fs/cgroup)."""
        d = self.dir(path)
        if not d.startswith(SYS_FS_CGROUP + "/"):
            raise CgroupsUnavailable(f"nftables finds cgroups only below {SYS_FS_CGROUP}, not at {d}")
        return d[len(SYS_FS_CGROUP) + 1:]

    @staticmethod
    def level(path: str) -> int:
        """The cgroup's depth (the root is 0): what `socket cgroupv2 level N` compares at."""
        return len([p for p in path.split("/") if p])

    def id(self, path: str) -> int:
        """The cgroup's id: the inode number of its directory (what nft resolves a path to)."""
        return os.stat(self.dir(path)).st_ino

    def exists(self, path: str) -> bool:
        return os.path.isdir(self.dir(path))

    def procs(self, path: str) -> list[int]:
        try:
            with open(os.path.join(self.dir(path), "cgroup.procs"), encoding="ascii") as f:
                return [int(p) for p in f.read().split()]
        except FileNotFoundError:
            return []

    def populated(self, path: str) -> bool:
        """cgroup.events' `populated`: a process in it or in a group below it."""
        try:
            with open(os.path.join(self.dir(path), "cgroup.events"), encoding="ascii") as f:
                return "populated 1" in f.read()
        except FileNotFoundError:
            return False

    def attach(self, path: str, pid: int) -> None:
        """Move process `pid` (all its threads) into `path`; its later children are born there."""
        try:
            fd = os.open(os.path.join(self.dir(path), "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        except OSError as e:
            raise KernelRefused("move a process into", f"cgroup {path}", e.errno) from None
        try:
            os.write(fd, str(pid).encode())
        except OSError as e:
            raise KernelRefused(f"move process {pid} into", f"cgroup {path}", e.errno) from None
        finally:
            os.close(fd)

    # -- our cgroups as kernel objects ------------------------------------
    def create(self, group: Group) -> None:
        try:
            os.mkdir(self.dir(group.path), 0o755)
            log.debug("created %s", group)
        except FileExistsError:
            log.debug("adopted %s", group)
        except OSError as e:
            raise KernelRefused("create", group, e.errno) from None

    def remove(self, group: Group) -> None:
        """Move its processes back to its origin (else the root), then delete it."""
        for _ in range(_EVACUATE_ROUNDS):
            pids = self.procs(group.path)
            if not pids:
                break
            for pid in pids:
                self.release(pid, group.origin)
        try:
            os.rmdir(self.dir(group.path))
            log.debug("removed %s", group)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise KernelRefused("remove", group, e.errno) from None

    def release(self, pid: int, origin: str) -> str:
        """Put `pid` back in `origin`, or in the root if the origin is gone or
        takes no processes; where it went.  A process that exited meanwhile is done."""
        for place in dict.fromkeys((origin, ROOT)):
            try:
                self.attach(place, pid)
                return place
            except KernelRefused as e:
                if e.errno == errno.ESRCH:
                    return place
                log.info("process %d cannot go back to cgroup %s (%s)", pid, place, os.strerror(e.errno))
        raise KernelRefused(f"move process {pid} out of", "netcfg's cgroups", errno.EBUSY)
