"""A line from a helper process, within a bound.

The kernel tests talk to small helper processes (probers, echo servers,
listeners) one line at a time.  A bare `proc.stdout.readline()` waits
forever for a helper that is stuck, or that lost its input to someone
else: one such wait hangs the whole suite with no message.  `read_line`
gives the helper `timeout` seconds; then it kills the helper and fails
the test naming `what`.  A helper that exits instead of answering fails
the test too, with its exit status: an empty line must never pass for an
answer.

It polls the pipe and reads what is there, never blocking in a read: a
thread left blocked in `readline()` would hold the file object's lock,
and closing it at teardown would hang in turn (it did, when a child of a
killed prober still held the pipe's write end).  Bytes after the line
wait on the Popen object for the next call, so only `read_line` may read
a helper's stdout.
"""

from __future__ import annotations

import os
import select
import subprocess
import time

ANSWER_TIMEOUT = 30.0  # s: far above any answer's normal time, even on a loaded 2-core machine


def read_line(proc: subprocess.Popen, what: str, timeout: float = ANSWER_TIMEOUT) -> str:
    """The next line `proc` writes to its stdout, stripped (module doc)."""
    fd = proc.stdout.fileno()
    data = proc.__dict__.pop("_unread", b"")
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            proc.kill()
            command = " ".join(" ".join(map(str, proc.args)).split())  # a -c script on one line
            raise AssertionError(f"{what}: no answer within {timeout:.0f} s from process {proc.pid} "
                                 f"({command[:100]}...); killed it")
        chunk = os.read(fd, 65536)
        if not chunk:
            try:
                status = proc.wait(5)
            except subprocess.TimeoutExpired:
                status = "none: it runs on with its stdout closed"
            raise AssertionError(f"{what}: process {proc.pid} gave no answer "
                                 f"(exit status {status}, it wrote {data[:200]!r})")
        data += chunk
    line, _, rest = data.partition(b"\n")
    proc._unread = rest
    return line.decode("utf-8", "replace").strip()
