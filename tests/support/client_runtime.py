"""Where and how the client runner runs as another UID (tests' side, as root).

The runner (``client_runner.py``) must run as other UIDs, so its interpreter,
its files and dbus_fast must be readable and executable by them.  The test
venv often is not: on these machines it is made from pyenv's python under
/root (mode 0700), so ``.venv/bin/python`` is a symlink other users cannot
follow.  Hence, once per test process:

1. the runner's files (``RUNNER_FILES``) and the installed ``dbus_fast``
   package are copied into a fresh world-readable directory under /tmp
   (``netcfg-client-*``, 0755, removed at exit), which becomes the child's
   PYTHONPATH;
2. for each user, the first interpreter that can ``import dbus_fast`` AS
   THAT USER from there wins, tried in order: the test interpreter
   (sys.executable), then the system's /usr/bin/python3,
   /usr/local/bin/python3, /usr/bin/python3.1x.  dbus_fast needs Python
   >= 3.11; its compiled modules are used when the ABI matches (the same
   3.11 minor version) and its pure-Python modules otherwise;
3. the child runs with ``user=``/``group=``/``extra_groups=`` (no
   supplementary groups unless given), cwd "/", a minimal environment and
   ``-s`` (no user site-packages).

scripts/setup.sh installs Debian's python3 so step 2 always has a
candidate.  ``client_runtime(user)`` tells which interpreter was chosen.
``_ids``, ``_env`` and ``_popen_kw`` are shared with ``subscriber.py``,
which runs from the same directory.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The client runner program: the script and the sibling modules it imports.
RUNNER_SCRIPT = "client_runner.py"
RUNNER_FILES = (RUNNER_SCRIPT, "client_runner_steps.py", "client_runner_values.py")

_SHARED_DIR: Path | None = None
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


@dataclasses.dataclass(frozen=True)
class ClientRuntime:
    python: str
    directory: str

    @property
    def script(self) -> str:
        """The runner program's path in ``directory``."""
        return os.path.join(self.directory, RUNNER_SCRIPT)


def _shared_dir() -> Path:
    global _SHARED_DIR
    if _SHARED_DIR is not None and _SHARED_DIR.is_dir():
        return _SHARED_DIR
    import dbus_fast

    d = Path(tempfile.mkdtemp(prefix="netcfg-client-"))
    atexit.register(shutil.rmtree, d, True)
    for name in RUNNER_FILES:
        shutil.copy2(HERE / name, d / name)
    shutil.copytree(
        Path(dbus_fast.__file__).parent,
        d / "dbus_fast",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    world_readable(d)
    _SHARED_DIR = d
    return d


def world_readable(d: Path) -> None:
    """Directories 0755, files 0644: other users may read and run from `d`."""
    for root, _dirs, files in os.walk(d):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)


def _ids(user: str | int | None, group: str | int | None) -> tuple[int, int]:
    if user is None:
        return os.getuid(), os.getgid() if group is None else _gid(group)
    pw = pwd.getpwnam(user) if isinstance(user, str) else pwd.getpwuid(user)
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
            r = subprocess.run(
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
            subprocess.run([py, "-m", "compileall", "-q", d], capture_output=True, env=_env(d))
            world_readable(Path(d))
            rt = ClientRuntime(py, d)
            _RUNTIMES[key] = rt
            return rt
        tried.append(f"{py}: rc={r.returncode} {r.stderr.strip()[-300:]}")
    raise ClientError(
        f"no interpreter can run the client as uid {uid}:\n" + "\n".join(tried)
    )
