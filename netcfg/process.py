"""The process that created a device: has it begun to exit?

Why the question: when a client dies, the kernel closes its tun fd and so
deletes the tun; the rtnetlink notice of that reaches us before the bus
says the client is gone (NameOwnerChanged), and foreign.py must not report
the link as removed by someone else: our own cleanup follows.

Why no wait can answer it: `do_exit()` in the kernel first marks the task
PF_EXITING (`exit_signals()`), then closes its files (`exit_files()`; the
last close of a tun fd runs `tun_chr_close()` -> `unregister_netdevice()`,
which sends the RTM_DELLINK), and only at the very end makes the process
a zombie (`exit_notify()`), which is when a pidfd becomes readable.
Between the two, deleting a tun waits for RCU grace periods, and deleting
a client's other tuns for one each: on a loaded machine the pidfd turned
readable more than 0.5 s after the notice, and a timed wait for it (the
old way) took the client's death for an admin's `ip link del`.

What decides instead is the order above, which the kernel guarantees: the
flag is set before the files are closed, so when we hold the notice of a
tun deleted by its client's exit, that process already shows PF_EXITING in
/proc/PID/stat (or is a zombie, or is gone).  A client that is not exiting
when its tun's deletion has been notified did not lose the tun to its
exit: someone deleted it (or the client closed its fd itself).

The pid is pinned by a pidfd opened when the device was created: while
the pidfd is not readable the process has not exited, so it cannot have
been reaped and the pid cannot belong to another process yet.
"""

from __future__ import annotations

import os
import select

PF_EXITING = 0x4  # include/linux/sched.h: set by do_exit() before the files are closed


class ClientProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._gone = False  # it had exited before we could open its pidfd
        self._fd: int | None = None
        try:
            self._fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._gone = True
        except OSError:  # no pidfds (kernel < 5.3, seccomp): /proc alone, without the pin
            pass

    def is_ending(self) -> bool:
        """True once the process has begun to exit (PF_EXITING), is a zombie, or is gone."""
        if self._exited():
            return True
        exiting = _exiting(self.pid)
        # The reading was of our process only if it has not exited since.
        return exiting or self._exited()

    def _exited(self) -> bool:
        if self._gone:
            return True
        if self._fd is None:
            return False
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _exiting(pid: int) -> bool:
    """/proc/PID/stat says the process is exiting (PF_EXITING, zombie, dead) or there is none.

    A read of procfs, on the loop: it never waits on a disk."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return True
    state, flags = fields[0], int(fields[6])
    return bool(flags & PF_EXITING) or state in (b"Z", b"X", b"x")


def command_name(pid: int) -> str:
    """The process's command name (/proc/PID/comm), "" when it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""
