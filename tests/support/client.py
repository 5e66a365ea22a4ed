#!/usr/bin/env python3
"""D-Bus client runner: executes JSON-described calls, prints JSON results.

Run as ``python client.py --address unix:path=/tmp/.../bus.sock`` (usually as
another UID through ``run_client``/``arun_client`` below).  It needs only the
standard library and ``dbus_fast``, and imports nothing from the test suite.

Input: the FIRST LINE of stdin is a JSON list of steps (or an object
``{"steps": [...]}``).  Output: one JSON line per step, flushed at once::

    {"ok": true, "body": [...], "fds": N, "fd_targets": ["/dev/net/tun"]}
    {"ok": false, "error": "org.freedesktop.DBus.Error.AccessDenied", "text": "..."}

Steps (objects):

* A method call, the default kind::

    {"destination": "net.openvpn.v3.netcfg", "path": "/net/openvpn/v3/netcfg",
     "interface": "net.openvpn.v3.netcfg", "member": "CreateVirtualInterface",
     "signature": "s", "body": ["tun-test"],
     "fd": "udp4",           # optional: attach fds, see below
     "timeout": 10,          # seconds, default 10 -> error "client.Timeout"
     "no_reply": false}      # true: send with NO_REPLY_EXPECTED, don't wait

  ``"fd"`` is one kind or a list of kinds: ``udp4``, ``udp6``, ``tcp4``,
  ``tcp6`` (unconnected sockets), ``unix`` (one end of a socketpair),
  ``devnull``; the message's ``unix_fds`` are those fds in that order, so an
  ``h`` argument is the INDEX into them (``0`` for the first).  The client
  keeps them open until it exits.  Received fds are kept open too; the reply
  reports their count (``fds``) and ``readlink /proc/self/fd/N``
  (``fd_targets``).

* ``{"sleep": 0.5}`` -- wait; result ``{"ok": true}``.
* ``{"signals": true}`` -- result body: the signals received so far
  (``[{"sender","path","interface","member","signature","body"}]``), which
  arrive once a step called ``org.freedesktop.DBus.AddMatch``.
* ``{"unique_name": true}`` -- result body: ``[":1.42"]``.
* ``"connection": N`` (any call, ``unique_name`` or ``signals`` step) --
  use the runner's N-th bus connection instead of the first (0, the
  default).  Connections 1, 2, ... are opened on first use and stay open
  until the runner exits: one process with several connections (same UID
  and PID, different unique names).  ``signals`` lists what arrived on that
  connection only.
* ``{"hold": true}`` -- must be last: print ``{"ok": true, "held": true}``
  and keep the connection (and all fds) open until stdin reaches EOF or the
  process gets SIGTERM/SIGINT; then exit 0.

Value encoding, anywhere in ``body``, ``path``, ``destination`` ...:

* ``{"variant": ["q", 1400]}``   -> ``Variant("q", 1400)`` (nested allowed)
* ``{"bytes": "0a0b"}``          -> ``b"\\x0a\\x0b"`` (hex; for ``ay``)
* ``{"ref": [2, 0]}``            -> body[0] of step 2's result; more indexes
  go deeper (``{"ref": [2, 0, "key"]}``).  A ref to a failed step makes the
  step fail with ``client.BadRef``.
* ``{"tuple": [...]}``           -> a tuple (structs may also be lists)

Replies use the same encoding (Variants, bytes); D-Bus structs come back as
lists.  Exit code 0 after all steps whatever their results, 2 for bad
input or when the bus connection fails (reported as an error line first).

From the tests (this same module, launcher section at the end; see there
for how the client runs as users who cannot read the test venv)::

    from support.client import arun_client, run_client

    res = await arun_client(bus.address, [
        {"destination": "net.openvpn.v3.netcfg", "path": "/net/openvpn/v3/netcfg",
         "interface": "net.openvpn.v3.netcfg", "member": "CreateVirtualInterface",
         "signature": "s", "body": ["tun-test"]},
        {"destination": "net.openvpn.v3.netcfg", "path": {"ref": [0, 0]},
         "interface": "org.freedesktop.DBus.Properties", "member": "Set",
         "signature": "ssv", "body": ["net.openvpn.v3.netcfg", "mtu",
                                      {"variant": ["u", 1400]}]},
    ], user="netcfg-test")
    assert res[0]["error"] == "org.freedesktop.DBus.Error.AccessDenied"

    held = run_client(bus.address, steps, user="openvpn", hold=True)
    ...                       # held.results: the steps' results
    held.kill()               # SIGKILL: the client disappears

``run_client`` blocks; in an async test use ``arun_client`` (same
arguments, ``hold=True`` gives an ``AsyncHeldClient`` with awaitable
``release()``/``terminate()``/``kill()``), or the test's own connections in
the same event loop cannot answer the client meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
from typing import Any

from dbus_fast import Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus


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


class Runner:
    def __init__(self, bus: MessageBus, address: str | None = None) -> None:
        self.bus = bus  # connection 0
        self.address = address
        self.buses: list[MessageBus] = []
        self.signal_lists: list[list[dict]] = []
        self.results: list[dict] = []
        self.keep: list = []  # our fds: sockets and raw ints
        self._add_bus(bus)
        self.signals = self.signal_lists[0]

    def _add_bus(self, bus: MessageBus) -> None:
        received: list[dict] = []
        self.buses.append(bus)
        self.signal_lists.append(received)
        bus.add_message_handler(lambda msg: self._on_message(msg, received))

    async def connection(self, st: dict) -> tuple[MessageBus, list[dict]]:
        """The bus connection (and its signal list) a step asks for."""
        index = st.get("connection", 0)
        if not isinstance(index, int) or index < 0 or index > 16:
            raise StepError("client.BadStep", f"bad connection index {index!r}")
        while len(self.buses) <= index:
            if self.address is None:
                raise StepError("client.BadStep", "no address for more connections")
            try:
                bus = await asyncio.wait_for(
                    MessageBus(bus_address=self.address, negotiate_unix_fd=True).connect(), 10
                )
            except Exception as e:
                raise StepError("client.ConnectFailed", f"{type(e).__name__}: {e}") from None
            self._add_bus(bus)
        return self.buses[index], self.signal_lists[index]

    def _on_message(self, msg: Message, received: list[dict]) -> None:
        if msg.message_type == MessageType.SIGNAL:
            received.append(
                {
                    "sender": msg.sender,
                    "path": msg.path,
                    "interface": msg.interface,
                    "member": msg.member,
                    "signature": msg.signature,
                    "body": encode(msg.body),
                }
            )
            # received fds of signals stay open, like replies' fds
            self.keep.extend(msg.unix_fds or [])
        return None

    async def step(self, st: dict) -> dict:
        if "sleep" in st:
            await asyncio.sleep(float(st["sleep"]))
            return {"ok": True}
        bus, received = await self.connection(st)
        if st.get("signals"):
            return {"ok": True, "body": list(received), "_body": list(received)}
        if st.get("unique_name"):
            return {"ok": True, "body": [bus.unique_name], "_body": [bus.unique_name]}
        return await self.call(st, bus)

    async def call(self, st: dict, bus: MessageBus | None = None) -> dict:
        bus = self.bus if bus is None else bus
        r = self.results
        kinds = st.get("fd", [])
        if isinstance(kinds, str):
            kinds = [kinds]
        fds = [make_fd(k, self.keep) for k in kinds]
        try:
            msg = Message(
                destination=decode(st.get("destination"), r),
                path=decode(st["path"], r),
                interface=decode(st.get("interface"), r),
                member=decode(st["member"], r),
                signature=st.get("signature", ""),
                body=decode(st.get("body", []), r),
                unix_fds=fds,
                flags=MessageFlag.NO_REPLY_EXPECTED if st.get("no_reply") else MessageFlag.NONE,
            )
        except StepError:
            raise
        except Exception as e:
            raise StepError("client.BadMessage", f"{type(e).__name__}: {e}") from None
        try:
            if st.get("no_reply"):
                await bus.send(msg)
                return {"ok": True, "body": [], "fds": 0}
            reply = await asyncio.wait_for(bus.call(msg), float(st.get("timeout", 10)))
        except asyncio.TimeoutError:
            raise StepError("client.Timeout", "no reply in time") from None
        except Exception as e:  # body does not match the signature, ...
            raise StepError("client.BadMessage", f"{type(e).__name__}: {e}") from None
        if reply is None:
            raise StepError("client.NoReply", "no reply")
        rfds = list(reply.unix_fds or [])
        self.keep.extend(rfds)
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            return {"ok": False, "error": reply.error_name, "text": text}
        return {
            "ok": True,
            "body": encode(reply.body),
            "_body": reply.body,
            "signature": reply.signature,
            "fds": len(rfds),
            "fd_targets": [fd_target(fd) for fd in rfds],
        }

    def close(self) -> None:
        for k in self.keep:
            try:
                if isinstance(k, int):
                    os.close(k)
                else:
                    k.close()
            except OSError:
                pass


def emit(obj: dict) -> None:
    out = {k: v for k, v in obj.items() if not k.startswith("_")}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def start_hold() -> asyncio.Event:
    """An event set at EOF on stdin or on SIGTERM/SIGINT.  Installed BEFORE
    the "held" line is printed, so a signal right after it is handled."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            done.set()

    try:
        os.set_blocking(fd, False)
        loop.add_reader(fd, readable)
    except (OSError, ValueError):
        pass  # stdin is not pollable (a file): wait for a signal only
    return done


async def amain(address: str, steps: list[dict]) -> int:
    try:
        bus = await asyncio.wait_for(
            MessageBus(bus_address=address, negotiate_unix_fd=True).connect(), 10
        )
    except Exception as e:
        emit({"ok": False, "error": "client.ConnectFailed", "text": f"{type(e).__name__}: {e}"})
        return 2
    runner = Runner(bus, address)
    try:
        for i, st in enumerate(steps):
            if st.get("hold"):
                if i != len(steps) - 1:
                    emit({"ok": False, "error": "client.BadStep", "text": "hold must be last"})
                    return 2
                done = start_hold()
                emit({"ok": True, "held": True})
                await done.wait()
                break
            try:
                res = await runner.step(st)
            except StepError as e:
                res = {"ok": False, "error": e.name, "text": e.text}
            runner.results.append(res)
            emit(res)
    finally:
        for b in runner.buses:
            b.disconnect()
        for b in runner.buses:
            try:
                await asyncio.wait_for(b.wait_for_disconnect(), 5)
            except Exception:
                pass
        runner.close()
    return 0


# ======================================================================
# Launcher side: used by the tests (runs as root), not by the script.
# ======================================================================
#
# The client must run as other UIDs, so its interpreter, this file and
# dbus_fast must be readable and executable by them.  The test venv often
# is not: on these machines it is made from pyenv's python under /root
# (mode 0700), so ``.venv/bin/python`` is a symlink other users cannot
# follow.  Hence, once per test process:
#
# 1. this file and the installed ``dbus_fast`` package are copied into a
#    fresh world-readable directory under /tmp (``netcfg-client-*``, 0755,
#    removed at exit), which becomes the child's PYTHONPATH;
# 2. for each user, the first interpreter that can ``import dbus_fast`` AS
#    THAT USER from there wins, tried in order: the test interpreter
#    (sys.executable), then the system's /usr/bin/python3,
#    /usr/local/bin/python3, /usr/bin/python3.1x.  dbus_fast needs Python
#    >= 3.11; its compiled modules are used when the ABI matches (the same
#    3.11 minor version) and its pure-Python modules otherwise;
# 3. the child runs with ``user=``/``group=``/``extra_groups=`` (no
#    supplementary groups unless given), cwd "/", a minimal environment and
#    ``-s`` (no user site-packages).
#
# scripts/setup.sh installs Debian's python3 so step 2 always has a
# candidate.  ``client_runtime(user)`` tells which interpreter was chosen.

import atexit as _atexit
import dataclasses as _dc
import pwd as _pwd
import shutil as _shutil
import subprocess as _sp
import tempfile as _tempfile
from pathlib import Path as _Path

_SHARED_DIR: _Path | None = None
_RUNTIMES: dict[tuple, "ClientRuntime"] = {}
_CANDIDATES = (
    "/usr/bin/python3",
    "/usr/local/bin/python3",
    "/usr/bin/python3.11",
    "/usr/bin/python3.12",
    "/usr/bin/python3.13",
)


class ClientError(RuntimeError):
    """The runner itself failed (not a D-Bus error of a step)."""


@_dc.dataclass(frozen=True)
class ClientRuntime:
    python: str
    directory: str

    @property
    def script(self) -> str:
        return os.path.join(self.directory, "client.py")


def _shared_dir() -> _Path:
    global _SHARED_DIR
    if _SHARED_DIR is not None and _SHARED_DIR.is_dir():
        return _SHARED_DIR
    import dbus_fast

    d = _Path(_tempfile.mkdtemp(prefix="netcfg-client-"))
    _atexit.register(_shutil.rmtree, d, True)
    _shutil.copy2(__file__, d / "client.py")
    _shutil.copytree(
        _Path(dbus_fast.__file__).parent,
        d / "dbus_fast",
        ignore=_shutil.ignore_patterns("__pycache__"),
    )
    for root, dirs, files in os.walk(d):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    _SHARED_DIR = d
    return d


def _ids(user: str | int | None, group: str | int | None) -> tuple[int, int]:
    if user is None:
        return os.getuid(), os.getgid() if group is None else _gid(group)
    pw = _pwd.getpwnam(user) if isinstance(user, str) else _pwd.getpwuid(user)
    return pw.pw_uid, pw.pw_gid if group is None else _gid(group)


def _gid(group: str | int) -> int:
    import grp

    return group if isinstance(group, int) else grp.getgrnam(group).gr_gid


def _env(directory: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": directory,
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
        "HOME": "/",
    }


def _popen_kw(uid: int, gid: int, extra_groups) -> dict:
    if uid == os.getuid() and gid == os.getgid() and extra_groups is None:
        return {}
    return {
        "user": uid,
        "group": gid,
        "extra_groups": list(extra_groups or []),
    }


def client_runtime(
    user: str | int | None = None, group: str | int | None = None, extra_groups=None
) -> ClientRuntime:
    """The interpreter and directory the client runs from as ``user``."""
    uid, gid = _ids(user, group)
    key = (uid, gid, tuple(extra_groups or ()))
    if key in _RUNTIMES:
        return _RUNTIMES[key]
    d = str(_shared_dir())
    tried = []
    seen = set()
    for py in (sys.executable, *_CANDIDATES):
        if not os.path.exists(py):
            continue
        real = os.path.realpath(py)
        if real in seen and py != sys.executable:
            continue
        seen.add(real)
        try:
            r = _sp.run(
                [py, "-s", "-c", "import dbus_fast.aio, sys; print(sys.version_info[:2])"],
                env=_env(d),
                cwd="/",
                capture_output=True,
                text=True,
                timeout=60,
                **_popen_kw(uid, gid, extra_groups),
            )
        except OSError as e:
            tried.append(f"{py}: {e}")
            continue
        if r.returncode == 0:
            # Byte-compile as root for this interpreter (others can't write).
            _sp.run([py, "-m", "compileall", "-q", d], capture_output=True, env=_env(d))
            for root, dirs, files in os.walk(d):
                os.chmod(root, 0o755)
                for f in files:
                    os.chmod(os.path.join(root, f), 0o644)
            rt = ClientRuntime(py, d)
            _RUNTIMES[key] = rt
            return rt
        tried.append(f"{py}: rc={r.returncode} {r.stderr.strip()[-300:]}")
    raise ClientError(
        f"no interpreter can run the client as uid {uid}:\n" + "\n".join(tried)
    )


def _argv(rt: ClientRuntime, address: str) -> list[str]:
    return [rt.python, "-s", rt.script, "--address", address]


def _input(steps: list[dict], hold: bool) -> bytes:
    steps = list(steps)
    if hold and not (steps and steps[-1].get("hold")):
        steps.append({"hold": True})
    return (json.dumps(steps) + "\n").encode()


def _parse(out: bytes, err: bytes, rc: int | None, nsteps: int) -> list[dict]:
    lines = [json.loads(x) for x in out.decode().splitlines() if x.strip()]
    results = [x for x in lines if not x.get("held")]
    if rc not in (0, None) or len(results) != nsteps:
        raise ClientError(
            f"client runner: exit code {rc}, {len(results)}/{nsteps} results\n"
            f"stdout: {out.decode()!s}\nstderr: {err.decode()!s}"
        )
    return results


def run_client(
    address: str,
    steps: list[dict],
    user: str | int | None = None,
    *,
    hold: bool = False,
    group: str | int | None = None,
    extra_groups=None,
    timeout: float = 60,
):
    """Run ``steps`` as ``user`` (None: as we are).  Returns the list of
    per-step result dicts; with ``hold=True`` a :class:`HeldClient` once the
    steps are done and the connection is held open.  Blocking: from an
    async test use :func:`arun_client`, or the event loop cannot answer
    calls the client makes to connections of the test itself."""
    rt = client_runtime(user, group, extra_groups)
    uid, gid = _ids(user, group)
    nsteps = len([s for s in steps if not s.get("hold")])
    proc = _sp.Popen(
        _argv(rt, address),
        stdin=_sp.PIPE,
        stdout=_sp.PIPE,
        stderr=_sp.PIPE,
        env=_env(rt.directory),
        cwd="/",
        **_popen_kw(uid, gid, extra_groups),
    )
    if not hold:
        try:
            out, err = proc.communicate(_input(steps, False), timeout=timeout)
        except _sp.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise ClientError(f"client runner timed out\nstdout: {out!r}\nstderr: {err!r}")
        return _parse(out, err, proc.returncode, nsteps)
    proc.stdin.write(_input(steps, True))
    proc.stdin.flush()
    lines = []
    import select

    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            proc.kill()
            raise ClientError(f"client runner did not reach hold: {lines!r}")
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            err = proc.stderr.read()
            _parse(b"".join(lines), err, proc.returncode, nsteps)  # raises
            raise ClientError(f"client exited before hold: {lines!r} {err!r}")
        lines.append(line)
        if json.loads(line).get("held"):
            break
    return HeldClient(proc, _parse(b"".join(lines), b"", None, nsteps))


class HeldClient:
    """A client runner holding its connection open (sync API).

    ``results``: the per-step results; ``pid``; ``release()`` closes its
    stdin (clean disconnect, exit 0); ``terminate()`` (SIGTERM, also clean)
    and ``kill()`` (SIGKILL: the client "disappears") return the exit code.
    """

    def __init__(self, proc: _sp.Popen, results: list[dict]) -> None:
        self.proc = proc
        self.results = results

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _finish(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except _sp.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        return rc

    def release(self, timeout: float = 10) -> int:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self._finish(timeout)

    def terminate(self, timeout: float = 10) -> int:
        if self.alive():
            self.proc.terminate()
        return self._finish(timeout)

    def kill(self) -> int:
        if self.alive():
            self.proc.kill()
        return self._finish(10)

    def __enter__(self) -> "HeldClient":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


async def arun_client(
    address: str,
    steps: list[dict],
    user: str | int | None = None,
    *,
    hold: bool = False,
    group: str | int | None = None,
    extra_groups=None,
    timeout: float = 60,
):
    """Async :func:`run_client`: the event loop keeps running meanwhile.
    With ``hold=True`` returns an :class:`AsyncHeldClient`."""
    loop = asyncio.get_running_loop()
    # The first call per user probes interpreters (subprocesses): off-loop.
    rt = await loop.run_in_executor(None, client_runtime, user, group, extra_groups)
    uid, gid = _ids(user, group)
    nsteps = len([s for s in steps if not s.get("hold")])
    proc = await asyncio.create_subprocess_exec(
        *_argv(rt, address),
        stdin=_sp.PIPE,
        stdout=_sp.PIPE,
        stderr=_sp.PIPE,
        env=_env(rt.directory),
        cwd="/",
        **_popen_kw(uid, gid, extra_groups),
    )
    if not hold:
        try:
            out, err = await asyncio.wait_for(proc.communicate(_input(steps, False)), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            raise ClientError(f"client runner timed out\nstdout: {out!r}\nstderr: {err!r}")
        return _parse(out, err, proc.returncode, nsteps)
    proc.stdin.write(_input(steps, True))
    await proc.stdin.drain()
    lines = []
    try:
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            if not line:
                await proc.wait()
                err = await proc.stderr.read()
                _parse(b"".join(lines), err, proc.returncode, nsteps)
                raise ClientError(f"client exited before hold: {lines!r} {err!r}")
            lines.append(line)
            if json.loads(line).get("held"):
                break
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise ClientError(f"client runner did not reach hold: {lines!r}") from None
    return AsyncHeldClient(proc, _parse(b"".join(lines), b"", None, nsteps))


class AsyncHeldClient:
    """:class:`HeldClient` for async tests: the same methods, awaitable."""

    def __init__(self, proc: asyncio.subprocess.Process, results: list[dict]) -> None:
        self.proc = proc
        self.results = results

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def _finish(self, timeout: float) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    async def release(self, timeout: float = 10) -> int:
        if self.proc.stdin and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        return await self._finish(timeout)

    async def terminate(self, timeout: float = 10) -> int:
        if self.alive():
            self.proc.terminate()
        return await self._finish(timeout)

    async def kill(self) -> int:
        if self.alive():
            self.proc.kill()
        return await self._finish(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--address", required=True, help="D-Bus address, unix:path=...")
    args = p.parse_args(argv)
    line = sys.stdin.readline()
    try:
        steps = json.loads(line)
        if isinstance(steps, dict):
            steps = steps["steps"]
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise ValueError("steps must be a list of objects")
    except (ValueError, KeyError) as e:
        emit({"ok": False, "error": "client.BadInput", "text": str(e)})
        return 2
    return asyncio.run(amain(args.address, steps))


if __name__ == "__main__":
    sys.exit(main())
