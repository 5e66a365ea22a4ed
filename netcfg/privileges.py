"""Keep only the capabilities netcfg uses (spec 4.1, "the capability model").

The original drops every capability but CAP_NET_ADMIN (+DAC_OVERRIDE,
+NET_RAW) and switches to the `openvpn` user.  We keep the capability part
and stay uid 0, because files we write must stay root's: the resolv.conf
backend replaces /etc/resolv.conf by rename (a new inode, owned by whoever
writes it), the journal lives in --state-dir, and openresolv's
`resolvconf` is a program we exec, which as non-root would run without any
capability.  So a compromised netcfg can configure the network (its job)
but cannot load modules, mount, trace processes, change users or bypass
the bounding set in programs it starts.

Kept (effective, permitted, and the bounding set):
  CAP_NET_ADMIN    links, addresses, routes, rules, tun, SO_MARK, *BUFFORCE
  CAP_NET_RAW      SO_BINDTODEVICE (--redirect-method bind-device)
  CAP_DAC_OVERRIDE resolv.conf / openresolv / state files of other owners
  CAP_CHOWN        give a rewritten resolv.conf its owner back
  CAP_FOWNER       replace or restore a resolv.conf we do not own (its mode,
                   or a file in a sticky directory such as /tmp)

No library wraps capset(2) in the standard library; python-prctl and
libcap-ng's bindings need a C build or Debian's site-packages, for four
system calls: ctypes it is.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os

log = logging.getLogger(__name__)

CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_SETPCAP, CAP_NET_ADMIN, CAP_NET_RAW = 0, 1, 3, 8, 12, 13
KEPT = (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_NET_ADMIN, CAP_NET_RAW)
NAMES = {CAP_CHOWN: "cap_chown", CAP_DAC_OVERRIDE: "cap_dac_override", CAP_FOWNER: "cap_fowner",
         CAP_NET_ADMIN: "cap_net_admin", CAP_NET_RAW: "cap_net_raw"}

PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40  # CAP_CHECKPOINT_RESTORE, Linux 5.9


def drop(kept: tuple[int, ...] = KEPT) -> None:
    """Shrink this process's capabilities to `kept` (or what it has of them), for good.

    Capabilities belong to each thread, and a new thread copies its
    creator's: so this must run while the process has one thread, before
    asyncio's worker threads exist (`python -m netcfg` calls it first thing).
    Order matters: the bounding set can only be shrunk while we still hold
    CAP_SETPCAP, so it goes first; capset() then drops the rest.  Raises
    OSError if the kernel refuses or other threads exist (the caller stops:
    running with more privilege than documented is not an option).
    """
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        raise OSError(errno.EBUSY, f"{threads} threads: capabilities are per thread, drop them before any starts")
    have = _mask("CapPrm")
    if have & (1 << CAP_SETPCAP):
        for cap in range(_last_cap() + 1):
            if cap not in kept and _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 \
                    and ctypes.get_errno() != errno.EINVAL:
                _check(-1, f"dropping capability {cap} from the bounding set")
    # Ambient capabilities would survive an exec by a non-root child.
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    mask = sum(1 << cap for cap in kept) & have
    words = (mask & 0xFFFFFFFF, mask >> 32)
    data = (_Data * 2)(*(_Data(w, w, 0) for w in words))
    _check(_libc.capset(ctypes.byref(_Header(_LINUX_CAPABILITY_VERSION_3, 0)), data), "capset")
    log.info("capabilities dropped to %s", ", ".join(NAMES[c] for c in kept if mask & (1 << c)) or "none")


def has(cap: int) -> bool:
    """Is `cap` in this process's effective set?"""
    return bool(_mask("CapEff") & (1 << cap))


def _mask(field: str) -> int:
    """A capability mask of this process from /proc/self/status (CapEff, CapPrm, CapBnd)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    return 0
