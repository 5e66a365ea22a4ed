"""A scratch mount namespace for DNS tests: the machine's files stay untouched.

`Namespace.start()` runs a holder process under `unshare --mount
--propagation private` (plus `--net` when asked) that sets up, in order:

1. an optional shell snippet while the host's /run is still visible (veth
   pairs are moved into a named network namespace found in /run/netns);
2. with its own network namespace: `lo` up and a fresh sysfs on /sys, or
   /sys/class/net would still list the host's links;
3. a tmpfs on /run: the programs under test (resolved, dbus-daemon,
   openresolv's /run/resolvconf) keep their runtime state there, and the
   scratch directory /run/netcfg-test holds the overlay layers below;
4. an overlay on /etc with its upper layer on that tmpfs.  A bind mount
   over /etc/resolv.conf would not do: rename(2) onto a mount point fails
   with EBUSY, and atomic replacement is rename.  Backups made next to the
   file stay inside the overlay too;
5. read-only overlays putting package trees on top of system directories
   (openresolv's files over /usr).

Then it prints "ready" and sleeps.  Everything else enters it with nsenter
(`run`, `sh`, `popen`), so files are seen exactly as the code under test
sees them.  `stop()` kills what was started and the holder; the namespace
and all its mounts vanish with its last process.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRATCH = "/run/netcfg-test"
PYTHON = sys.executable

_SETUP = """
set -e
{pre_mount}
{net_setup}
mount -t tmpfs -o mode=0755 netcfg-test-run /run
mkdir -p {scratch}/etc-upper {scratch}/etc-work {scratch}/state
mount -t overlay netcfg-test-etc -o lowerdir=/etc,upperdir={scratch}/etc-upper,workdir={scratch}/etc-work /etc
{layers}
echo ready
exec sleep infinity
"""

_NET_SETUP = """
ip link set lo up
umount -l /sys
mount -t sysfs netcfg-test-sys /sys
"""


class NamespaceError(AssertionError):
    pass


def _readline(stream, timeout: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return ""
        return stream.readline()
    finally:
        sel.close()


class Namespace:
    def __init__(self, *, net: bool = False, pre_mount: str = "", layers: dict[str, Path] | None = None) -> None:
        self.net = net
        self.pre_mount = pre_mount
        self.layers = layers or {}
        self.proc: subprocess.Popen | None = None
        self.children: list[subprocess.Popen] = []

    # -- life cycle --

    def start(self) -> "Namespace":
        layers = "\n".join(
            f"mount -t overlay netcfg-test-layer -o lowerdir={layer}:{target} {target}"
            for target, layer in self.layers.items())
        script = _SETUP.format(pre_mount=self.pre_mount, net_setup=_NET_SETUP if self.net else "",
                               scratch=SCRATCH, layers=layers)
        argv = ["unshare", "--mount", "--propagation", "private", *(["--net"] if self.net else []),
                "sh", "-c", script]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        line = _readline(self.proc.stdout, 10)
        if line.strip() != "ready":
            self.proc.kill()
            err = self.proc.stderr.read()
            raise NamespaceError(f"namespace set-up failed ({argv[:6]}...):\n{err}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        for child in reversed(self.children):
            _terminate(child)
        self.children.clear()
        if self.proc is not None:
            _terminate(self.proc)
            self.proc = None

    # -- entering --

    def enter(self, *argv: str) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-m", *(["-n"] if self.net else []), *argv]

    def run(self, *argv: str, input: str | None = None, check: bool = True, env: dict | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        r = subprocess.run(self.enter(*argv), input=input, capture_output=True, text=True,
                           env=full_env, timeout=timeout)
        if check and r.returncode != 0:
            raise NamespaceError(f"{' '.join(argv)} -> exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.run("sh", "-ec", script, **kw)

    def popen(self, *argv: str, env: dict | None = None, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(self.enter(*argv), env={**os.environ, **(env or {})},
                                start_new_session=True, **kw)
        self.children.append(proc)
        return proc

    # -- files, as the code under test sees them --

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Replace `path` by a regular file (never writing through a symlink)."""
        self.sh(f'rm -f "{path}"; cat > "{path}"; chmod {mode:o} "{path}"', input=text)

    def read(self, path: str) -> str:
        return self.run("cat", path).stdout

    def info(self, path: str) -> dict | None:
        """kind ("file"/"symlink"/...), mode, ino, uid, gid, target, text; None if absent."""
        code = (
            "import json,os,stat,sys\n"
            "p=sys.argv[1]\n"
            "try: st=os.lstat(p)\n"
            "except FileNotFoundError: print('null'); sys.exit(0)\n"
            "kind='symlink' if stat.S_ISLNK(st.st_mode) else 'file' if stat.S_ISREG(st.st_mode) else 'other'\n"
            "target=os.readlink(p) if kind=='symlink' else None\n"
            "try: text=open(p).read()\n"
            "except OSError: text=None\n"
            "print(json.dumps(dict(kind=kind,mode=stat.S_IMODE(st.st_mode),ino=st.st_ino,uid=st.st_uid,"
            "gid=st.st_gid,target=target,text=text)))\n")
        return json.loads(self.run(PYTHON, "-c", code, path).stdout)

    def listdir(self, path: str) -> list[str]:
        return sorted(self.run("ls", "-A", path).stdout.split())

    # -- the DNS core, driven as the service drives it --

    def runner(self, **start) -> "Runner":
        return Runner(self, start)


class Runner:
    """tests/dns/runner.py inside the namespace; `call(op, **args)` -> reply dict."""

    def __init__(self, ns: Namespace, start: dict) -> None:
        self.ns = ns
        self.log_path = Path(f"/tmp/netcfg-dns-runner-{os.getpid()}-{id(self)}.log")
        self._log = open(self.log_path, "w+")
        self.proc = ns.popen(PYTHON, str(HERE / "runner.py"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=self._log, text=True)
        self.started = self.call("start", **start) if start is not None else None

    def call(self, op: str, timeout: float = 30, **args) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = _readline(self.proc.stdout, timeout)
        if not line:
            raise NamespaceError(f"runner gave no answer to {op} within {timeout} s:\n{self.log()}")
        return json.loads(line)

    def ok(self, op: str, **args) -> dict:
        reply = self.call(op, **args)
        if not reply.get("ok"):
            raise NamespaceError(f"{op} {args} failed: {reply}\n{self.log()}")
        return reply

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def wait_log(self, needle: str, timeout: float = 5) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if needle in text:
                return text
            time.sleep(0.05)
        raise NamespaceError(f"'{needle}' not in the runner's log within {timeout} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: a crash, nothing gets cleaned up."""
        self.proc.kill()
        self.proc.wait(5)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        _close_pipes(self.proc)
        self._log.close()
        self.log_path.unlink(missing_ok=True)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(5)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    _close_pipes(proc)


def _close_pipes(proc: subprocess.Popen) -> None:
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
