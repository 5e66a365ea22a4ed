"""Launching the client runner as another UID and reading its results.

``run_client`` (blocking) and ``arun_client`` (async: the event loop keeps
running meanwhile) start ``client_runner.py`` from the shared directory of
``client_runtime.py``, write the steps to its stdin and parse its JSON result
lines; with ``hold=True`` they return a handle from ``client_handles.py``.
The step format is documented in ``client_runner*.py``; the usage, in
``client.py``.
"""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import time

from .client_handles import AsyncHeldClient, HeldClient
from .client_runtime import ClientError, ClientRuntime, _env, _ids, _popen_kw, client_runtime


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
    proc = subprocess.Popen(
        _argv(rt, address),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(rt.directory),
        cwd="/",
        **_popen_kw(uid, gid, extra_groups),
    )
    if not hold:
        try:
            out, err = proc.communicate(_input(steps, False), timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise ClientError(f"client runner timed out\nstdout: {out!r}\nstderr: {err!r}")
        return _parse(out, err, proc.returncode, nsteps)
    proc.stdin.write(_input(steps, True))
    proc.stdin.flush()
    lines = []
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
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(rt.directory),
        cwd="/",
        **_popen_kw(uid, gid, extra_groups),
    )
    try:
        return await _talk(proc, steps, hold, nsteps, timeout)
    except BaseException:
        # Cancelled (a test's task stopped mid-call), timed out, or bad
        # output: kill and reap the runner here, so that neither it nor its
        # transport outlives this call (and the test's event loop).
        await _reap(proc)
        raise


async def _talk(proc: asyncio.subprocess.Process, steps: list[dict], hold: bool, nsteps: int,
                timeout: float):
    """The steps in, the results out (arun_client's part after the start)."""
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


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Kill the runner if it still runs and wait until it and its pipes are
    done: its subprocess transport is closed when this returns."""
    if proc.returncode is None:
        proc.kill()
    await proc.communicate()
