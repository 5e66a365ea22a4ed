"""A line from a helper process, within a bound.

The kernel tests talk to small helper processes (probers, echo servers,
listeners) one line at a time.  A bare `proc.stdout.readline()` waits
forever for a helper that is stuck, or that lost its input to someone
else: one such wait hangs the whole suite with no message.  `read_line`
gives the helper `timeout` seconds; then it kills the helper (which ends
the read: the pipe's writer is gone) and fails the test naming `what`.
A helper that exits instead of answering fails the test too, with its
exit status: an empty line must never pass for an answer.

Helpers must not leave the pipe's write end in a child of theirs: the
kill would not end the read then (support/splitlab.py's prober gives its
long-lived child /dev/null instead).
"""

from __future__ import annotations

import subprocess
import threading

ANSWER_TIMEOUT = 30.0  # s: far above any answer's normal time, even on a loaded 2-core machine


def read_line(proc: subprocess.Popen, what: str, timeout: float = ANSWER_TIMEOUT) -> str:
    """The next line `proc` writes to its stdout, stripped (module doc)."""
    got: list = []

    def read() -> None:
        try:
            got.append(proc.stdout.readline())
        except (OSError, ValueError) as e:  # closed meanwhile (the test is being torn down)
            got.append(e)

    reader = threading.Thread(target=read, name=f"read-{proc.pid}", daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        proc.kill()
        reader.join(5)
        raise AssertionError(f"{what}: no answer within {timeout:.0f} s from process {proc.pid} "
                             f"({' '.join(map(str, proc.args))[:120]}); killed it")
    line = got[0]
    if isinstance(line, Exception) or not line:
        try:
            status = proc.wait(5)
        except subprocess.TimeoutExpired:
            status = "still running, its stdout closed"
        raise AssertionError(f"{what}: process {proc.pid} gave no answer (exit status {status})")
    return (line.decode() if isinstance(line, bytes) else line).strip()
