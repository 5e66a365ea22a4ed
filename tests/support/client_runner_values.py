"""Client runner, its values: JSON step values <-> dbus-fast values, and fds.

Part of the client runner program (``client_runner.py``), which runs as other
UIDs from a copy of these files: it needs only the standard library and
``dbus_fast`` and imports nothing from the test suite.  Kept apart from the
step execution (``client_runner_steps.py``) because it is pure data
conversion.

Value encoding, anywhere in a step's ``body``, ``path``, ``destination`` ...:

* ``{"variant": ["q", 1400]}``   -> ``Variant("q", 1400)`` (nested allowed)
* ``{"bytes": "0a0b"}``          -> ``b"\\x0a\\x0b"`` (hex; for ``ay``)
* ``{"ref": [2, 0]}``            -> body[0] of step 2's result; more indexes
  go deeper (``{"ref": [2, 0, "key"]}``).  A ref to a failed step makes the
  step fail with ``client.BadRef``.
* ``{"tuple": [...]}``           -> a tuple (structs may also be lists)

Replies use the same encoding (Variants, bytes); D-Bus structs come back as
lists.

Fd kinds a call step can attach (``"fd"``): ``udp4``, ``udp6``, ``tcp4``,
``tcp6`` (unconnected sockets), ``unix`` (one end of a socketpair),
``devnull``.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from dbus_fast import Variant


class StepError(Exception):
    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name
        self.text = text


def decode(v: Any, results: list[dict]) -> Any:
    """JSON step value -> Python/dbus-fast value."""
    if isinstance(v, dict):
        if set(v) == {"variant"}:
            sig, val = v["variant"]
            return Variant(sig, decode(val, results))
        if set(v) == {"bytes"}:
            b = v["bytes"]
            return bytes(b) if isinstance(b, list) else bytes.fromhex(b)
        if set(v) == {"tuple"}:
            return tuple(decode(x, results) for x in v["tuple"])
        if set(v) == {"ref"}:
            return resolve_ref(v["ref"], results)
        return {k: decode(x, results) for k, x in v.items()}
    if isinstance(v, list):
        return [decode(x, results) for x in v]
    return v


def resolve_ref(ref: list, results: list[dict]) -> Any:
    if not ref or not isinstance(ref[0], int) or not 0 <= ref[0] < len(results):
        raise StepError("client.BadRef", f"no earlier step for ref {ref!r}")
    res = results[ref[0]]
    if not res.get("ok") or "_body" not in res:
        raise StepError("client.BadRef", f"ref {ref!r}: step {ref[0]} failed")
    cur: Any = res["_body"]
    try:
        for k in ref[1:]:
            cur = cur[k]
    except (KeyError, IndexError, TypeError) as e:
        raise StepError("client.BadRef", f"ref {ref!r}: {e!r}") from None
    return cur


def encode(v: Any) -> Any:
    """dbus-fast value -> JSON-able."""
    if isinstance(v, Variant):
        return {"variant": [v.signature, encode(v.value)]}
    if isinstance(v, (bytes, bytearray)):
        return {"bytes": bytes(v).hex()}
    if isinstance(v, dict):
        return {str(k): encode(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [encode(x) for x in v]
    return v


def make_fd(kind: str, keep: list) -> int:
    if kind in ("udp4", "udp6", "tcp4", "tcp6"):
        fam = socket.AF_INET if kind.endswith("4") else socket.AF_INET6
        typ = socket.SOCK_DGRAM if kind.startswith("udp") else socket.SOCK_STREAM
        s = socket.socket(fam, typ)
        keep.append(s)
        return s.fileno()
    if kind == "unix":
        a, b = socket.socketpair()
        keep.extend((a, b))
        return a.fileno()
    if kind == "devnull":
        fd = os.open(os.devnull, os.O_RDWR)
        keep.append(fd)
        return fd
    raise StepError("client.BadStep", f"unknown fd kind {kind!r}")


def fd_target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError as e:
        return f"?{e.strerror}"
