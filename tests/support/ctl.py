"""Running `netcfgctl` for real: as root or as another user, against the test bus.

``await ctl(bus.address, "devices", "--json")`` runs ``python -m
netcfg.ctl.main devices --json`` with DBUS_SYSTEM_BUS_ADDRESS set to the
test bus (how every client finds the system bus) and returns a ``Ran``
(returncode, stdout, stderr, ``.json()``).  It runs as an asyncio
subprocess, so the test's own connections keep being served meanwhile.

As another user (``user="netcfg-test"``), the interpreter is the one
support/client_runtime.py found that user can run, and the code comes
from a world-readable copy of the ``netcfg`` package with ``dbus_fast``
and ``yaml`` beside it (the repo and the venv may be unreadable to others).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import REPO_ROOT
from .client_runtime import _ids, _popen_kw, client_runtime, world_readable

_COPY: Path | None = None


@dataclass
class Ran:
    argv: list
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        assert self.returncode == 0, f"{self.argv}: exit {self.returncode}\n{self.stderr}"
        return json.loads(self.stdout)


def _world_readable_copy() -> Path:
    global _COPY
    if _COPY is not None and _COPY.is_dir():
        return _COPY
    import dbus_fast
    import yaml

    d = Path(tempfile.mkdtemp(prefix="netcfgctl-"))
    atexit.register(shutil.rmtree, d, True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO_ROOT / "netcfg", d / "netcfg", ignore=ignore)
    shutil.copytree(Path(dbus_fast.__file__).parent, d / "dbus_fast", ignore=ignore)
    shutil.copytree(Path(yaml.__file__).parent, d / "yaml", ignore=ignore)
    world_readable(d)
    _COPY = d
    return d


def argv_env(bus_address: str, user: str | None) -> tuple[list[str], dict, dict]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/",
           "PYTHONDONTWRITEBYTECODE": "1", "DBUS_SYSTEM_BUS_ADDRESS": bus_address}
    if user is None:
        env["PYTHONPATH"] = str(REPO_ROOT)
        return [sys.executable, "-m", "netcfg.ctl.main"], env, {}
    copy = _world_readable_copy()
    rt = client_runtime(user)
    env["PYTHONPATH"] = str(copy)
    uid, gid = _ids(user, None)
    return [rt.python, "-s", "-m", "netcfg.ctl.main"], env, _popen_kw(uid, gid, None)


async def start_ctl(bus_address: str, *args: str, user: str | None = None,
                    env: dict | None = None) -> asyncio.subprocess.Process:
    argv, base_env, kw = argv_env(bus_address, user)
    return await asyncio.create_subprocess_exec(
        *argv, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**base_env, **(env or {})}, cwd="/", **kw)


async def ctl(bus_address: str, *args: str, user: str | None = None, env: dict | None = None,
              timeout: float = 60) -> Ran:
    proc = await start_ctl(bus_address, *args, user=user, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"netcfgctl {args} did not finish within {timeout} s") from None
    return Ran(["netcfgctl", *args], proc.returncode, out.decode(), err.decode())
