"""Plumbing for bench/run.py: a private bus and the service in a netns, a
tiny D-Bus client, the `ip -batch` baseline, /proc readings, statistics.

The bus, namespace and service helpers are the test suite's own
(tests/support), so the bench runs the service exactly as the tests do.
Everything the bench creates is registered in one `Environment` whose
`close()` (synchronous, signals ignored meanwhile) stops the service and
the bus and deletes the namespaces, however the run ends.
"""

from __future__ import annotations

import math
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from ipaddress import IPv4Address
from pathlib import Path

from dbus_fast import Message, MessageType, Variant

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from support import NETCFG_BUS_NAME as NAME, NETCFG_MANAGER_PATH as MANAGER  # noqa: E402
from support.busdaemon import BusDaemon  # noqa: E402
from support.netns import Netns  # noqa: E402
from support.service import ServiceProcess  # noqa: E402

IFACE = NAME
PROPS = "org.freedesktop.DBus.Properties"
PEER = "org.freedesktop.DBus.Peer"
NS_PREFIX = "netcfg-bench"

# The tunnel every cycle sets up: 10.8.0.2/24, routes via 10.8.0.1, and N
# host routes out of 198.18.0.0/15 (RFC 2544, benchmarking).
TUN_ADDR, TUN_PREFIX, TUN_GW = "10.8.0.2", 24, "10.8.0.1"
ROUTE_BASE = int(IPv4Address("198.18.0.0"))
RTPROT = "111"  # netcfg's route protocol (and the baseline's)


def networks(n: int) -> list[list]:
    """N AddNetworks entries (address, prefix, metric, ipv6, exclude)."""
    return [[str(IPv4Address(ROUTE_BASE + i)), 32, -1, False, False] for i in range(n)]


# -- environment -------------------------------------------------------
class Environment:
    """A temp dir, a private system-type dbus-daemon, a netns, the service.

    `await env.start()`; `env.close()` (sync) undoes what was started.
    """

    def __init__(self, log_level: int = 4, profile: Path | None = None, tree: Path | None = None) -> None:
        self._stack = ExitStack()
        self.dir = Path(tempfile.mkdtemp(prefix="netcfg-bench-"))
        os.chmod(self.dir, 0o755)
        self._stack.callback(shutil.rmtree, self.dir, ignore_errors=True)
        self.bus = BusDaemon(self.dir / "bus")
        self.ns: Netns | None = None
        self.service: ServiceProcess | None = None
        self.log_level = log_level
        self.profile = profile
        self.tree = tree  # run the service from these sources (an older commit) instead of this checkout

    async def start(self) -> "Environment":
        # Each undo is registered before its start: a signal may land half-way.
        self._stack.callback(self.bus.stop)
        self.bus.start()
        self.ns = self.fresh_netns()
        python = sys.executable
        if self.profile:  # the service under cProfile, written when it exits
            python = self.dir / "python-cprofile"
            python.write_text(f'#!/bin/sh\nexec {sys.executable} -m cProfile -o {self.profile.resolve()} "$@"\n')
            python.chmod(0o755)
        env = None if self.tree is None else {**os.environ, "PYTHONPATH": str(self.tree)}
        self.service = ServiceProcess(
            self.bus.address, self.ns.name, self.dir / "service", python=str(python),
            log_level=self.log_level, extra_args=["--dns-backend", "none"], env=env,
        )
        self._stack.callback(_stop_service, self.service)
        await self.service.start()
        return self

    def fresh_netns(self) -> Netns:
        """A new namespace, deleted by close() if the caller does not."""
        name = f"{NS_PREFIX}-{secrets.token_hex(4)}"
        self._stack.callback(Netns(name).delete)
        return Netns.create(name=name)

    def close(self) -> None:
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            self._stack.close()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


def _stop_service(svc: ServiceProcess) -> None:
    if svc.proc is None:
        return
    if svc.alive():  # SIGTERM: the service tears its devices down and exits 0
        svc.terminate()
        try:
            svc.proc.wait(15)
        except subprocess.TimeoutExpired:
            svc.kill()
            svc.proc.wait()
    svc._close_output()


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived; raised wherever the run was."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_on_signals() -> None:
    """Turn SIGINT/SIGTERM/SIGHUP into `Interrupted`, so the run unwinds and
    cleans up.  (Set before asyncio.run, which then leaves SIGINT alone; a
    blocking `ip` child that dies of the same Ctrl-C cannot win the race,
    the handler runs first as waitpid returns EINTR.)"""
    def handler(signum, _frame):
        raise Interrupted(signum)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


# -- client ------------------------------------------------------------
class CallFailed(RuntimeError):
    pass


async def call(bus, path: str, member: str, signature: str = "", body=(), interface: str = IFACE) -> Message:
    reply = await bus.call(Message(destination=NAME, path=path, interface=interface, member=member,
                                   signature=signature, body=list(body)))
    if reply.message_type is MessageType.ERROR:
        raise CallFailed(f"{member}: {reply.error_name}: {reply.body[0] if reply.body else ''}")
    return reply


async def new_device(bus, name: str = "bench") -> str:
    """A layer-3 device with one IPv4 address whose gateway the routes use."""
    path = (await call(bus, MANAGER, "CreateVirtualInterface", "s", [name])).body[0]
    await call(bus, path, "Set", "ssv", [IFACE, "layer", Variant("u", 3)], PROPS)
    await call(bus, path, "AddIPAddress", "susb", [TUN_ADDR, TUN_PREFIX, TUN_GW, False])
    return path


# -- baseline ------------------------------------------------------------
def ip_batch(env: Environment, n: int) -> tuple[float, float, float]:
    """Seconds `ip -n NS -batch FILE` takes (process start included) to add
    the same N routes via the same gateway on a tun in a fresh namespace:
    (wall, user CPU, system CPU)."""
    ns = env.fresh_netns()
    try:
        ns.ip("tuntap", "add", "dev", "tun0", "mode", "tun")
        ns.ip("addr", "add", f"{TUN_ADDR}/{TUN_PREFIX}", "dev", "tun0")
        ns.ip("link", "set", "tun0", "up")
        batch = env.dir / f"routes-{n}.batch"
        batch.write_text("".join(f"route add {a}/{p} via {TUN_GW} dev tun0 proto {RTPROT}\n"
                                 for a, p, *_ in networks(n)))
        ru0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        r = subprocess.run(["ip", "-n", ns.name, "-batch", str(batch)], capture_output=True, text=True)
        elapsed, ru1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise RuntimeError(f"ip -batch failed: {r.stderr.strip()}")
        got = count_routes(ns.name)
        if got != n:
            raise RuntimeError(f"ip -batch: {got} routes in the kernel, wanted {n}")
        return elapsed, ru1.ru_utime - ru0.ru_utime, ru1.ru_stime - ru0.ru_stime
    finally:
        ns.delete()


def count_routes(netns: str) -> int:
    """Routes with netcfg's protocol in the namespace (IPv4 and IPv6)."""
    r = subprocess.run(["ip", "-n", netns, "route", "show", "proto", RTPROT], capture_output=True,
                       text=True, check=True)
    r6 = subprocess.run(["ip", "-n", netns, "-6", "route", "show", "proto", RTPROT], capture_output=True,
                        text=True, check=True)
    return len(r.stdout.splitlines()) + len(r6.stdout.splitlines())


def tun_links(netns: str) -> list[str]:
    r = subprocess.run(["ip", "-n", netns, "-br", "link", "show", "type", "tun"], capture_output=True,
                       text=True, check=True)
    return [line.split()[0] for line in r.stdout.splitlines()]


# -- /proc -----------------------------------------------------------------
def proc_status_kib(pid: int, field: str) -> int:
    """A kB field of /proc/PID/status, e.g. VmRSS, VmHWM."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"process {pid} has no {field}: it exited")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, clock-tick resolution."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


# -- statistics ----------------------------------------------------------------
def summary(values: list[float]) -> dict:
    """median, p99 (nearest rank), min, max; the raw values too when few."""
    s = sorted(values)
    out = {"median": statistics.median(s), "p99": s[math.ceil(len(s) * 0.99) - 1], "min": s[0], "max": s[-1],
           "n": len(s)}
    if len(s) < 100:
        out["values"] = values
    return out


# -- an older commit, for comparisons in the same run ----------------------
def export_tree(ref: str, into: Path) -> str:
    """Write the files of commit `ref` into the directory `into` (git
    archive: no worktree, nothing recorded in the repository); returns the
    commit's short hash.  `python -m netcfg` with PYTHONPATH=into runs it."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", f"{ref}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(["git", "-C", str(REPO), "archive", "--format=tar", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {ref} failed")
    return commit
