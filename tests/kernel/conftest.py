"""Kernel tests: a fresh network namespace per test, and a tun device in it.

How a test reaches the namespace.  The namespace of a netlink socket or a
tun device is fixed when it is created, from the creating thread's network
namespace; after that the fd works from anywhere.  So the test process stays
in its own namespace and steps into the test namespace only for the instant
it opens something:

    with kernel_netns.inside():      # this thread only, switched back on exit
        batcher.open()               # the socket now lives in kernel_netns

Never `await` inside `inside()`: other tasks would run in the namespace.
Python 3.11 has no os.setns, hence ctypes; CLONE_NEWNET may be switched per
thread, even in a threaded process.

Commands run in the namespace with `ip -n NAME ...`: `kernel_netns.ip()` in
sync fixtures, `await kernel_netns.ip_async()` / `ip_json()` in tests, so
assertions read the kernel's own view.  Needs root (CAP_SYS_ADMIN).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import secrets
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

CLONE_NEWNET = 0x40000000
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@dataclass
class KernelNetns:
    name: str
    fd: int  # /run/netns/NAME, open while the namespace is in use

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run the block with this thread in the namespace (no awaits inside)."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(self.fd)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)

    def ip(self, *args: str) -> str:
        """Run `ip -n NAME ARGS` synchronously (for fixtures outside the loop)."""
        return subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True, text=True).stdout

    async def ip_async(self, *args: str) -> str:
        """`ip -n NAME ARGS` without blocking the event loop."""
        proc = await asyncio.create_subprocess_exec(
            "ip", "-n", self.name, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, f"ip {' '.join(args)}: {err.decode()}"
        return out.decode()

    async def ip_json(self, *args: str) -> list:
        """`ip -n NAME -j ARGS`, parsed."""
        return json.loads(await self.ip_async("-j", *args) or "[]")


@dataclass
class KernelTun:
    name: str
    index: int
    fd: int  # the device exists while this is open (not persistent)


@pytest.fixture
def kernel_netns() -> Iterator[KernelNetns]:
    name = f"nctest-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield KernelNetns(name, fd)
        finally:
            os.close(fd)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
def kernel_tun(kernel_netns: KernelNetns) -> Iterator[KernelTun]:
    """A tun device in `kernel_netns`, up, with 10.200.0.2/24 and fd00:200::2/64."""
    with kernel_netns.inside():
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        ifr = fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"nct%d", IFF_TUN | IFF_NO_PI))
        name = ifr[:16].rstrip(b"\0").decode()
        kernel_netns.ip("link", "set", name, "up")
        kernel_netns.ip("addr", "add", "10.200.0.2/24", "dev", name)
        kernel_netns.ip("-6", "addr", "add", "fd00:200::2/64", "dev", name, "nodad")
        index = json.loads(kernel_netns.ip("-j", "link", "show", name))[0]["ifindex"]
        yield KernelTun(name, index, fd)
    finally:
        os.close(fd)


@pytest_asyncio.fixture
async def nl(kernel_netns):
    """The service's netlink handles (pyroute2 + the route batcher), opened in `kernel_netns`."""
    from pyroute2 import AsyncIPRoute

    from netcfg.kernel.batch import RouteBatcher
    from netcfg.kernel.netlink import Netlink

    nl = Netlink()
    nl.ipr = AsyncIPRoute(netns=kernel_netns.name)  # pyroute2 opens its socket there
    nl.routes = RouteBatcher()
    with kernel_netns.inside():
        nl.routes.open()
    try:
        yield nl
    finally:
        await nl.close()


class Events:
    """Stand-in for the bus's event sink (no bus in kernel tests): records what the core reports."""

    def __init__(self) -> None:
        self.changes: list = []

    def wants(self, type_) -> bool:
        return True

    def emit(self, path, change) -> None:
        self.changes.append(change)


@pytest_asyncio.fixture
async def context(kernel_netns, nl, tmp_path):
    """A real Context in `kernel_netns`: netlink, a started kernel watch, a
    journal in tmp_path/state, no DNS backend, a recording event sink."""
    from netcfg.config import Options
    from netcfg.context import Context
    from netcfg.dns.order import DnsManager
    from netcfg.kernel.watch import KernelWatch
    from netcfg.state import Journal

    watch = KernelWatch()
    with kernel_netns.inside():
        watch.open()
    await watch.start()
    journal = Journal(tmp_path / "state")
    try:
        yield Context(Options(state_dir=str(tmp_path / "state")), nl, journal, DnsManager(), Events(), watch)
    finally:
        await watch.stop()
        journal.close()

# -- leak protection (test_leak_*.py) -------------------------------------
class LeakTable:
    """netcfg's leak-protection table in a test namespace, driven directly:
    `apply(LeakRules)` plans with netcfg.leak.rules and replaces the table
    with netcfg.kernel.nft, on a libnftables context opened in the namespace."""

    def __init__(self, nsname: str) -> None:
        from netcfg.kernel.libnft import Nft
        from netcfg.kernel.nft import NftTable
        from support.nsenter import enter

        self.nsname = nsname
        self.nft = Nft(thread_init=lambda: enter(nsname))
        self.table = NftTable()

    async def apply(self, rules) -> None:
        from netcfg.leak.rules import ruleset

        await self.table.replace(self.nft, ruleset(rules))

    async def counters(self) -> dict:
        return await self.table.counters(self.nft)

    async def remove(self) -> None:
        await self.table.remove(self.nft)

    def listing(self, family: str = "inet", name: str = "netcfg") -> str:
        """`nft list table` as the nft command prints it ("" if absent)."""
        r = subprocess.run(["ip", "netns", "exec", self.nsname, "nft", "list", "table", family, name],
                           capture_output=True, text=True)
        return r.stdout


@pytest.fixture
def lab(request, netns):
    """support.leaklab.LeakLab around `netns`; `@pytest.mark.leaklab(container=True)` adds the container."""
    from support.leaklab import LeakLab

    marker = request.node.get_closest_marker("leaklab")
    lab = LeakLab.build(netns, **(marker.kwargs if marker else {}))
    try:
        yield lab
    finally:
        lab.delete()


@pytest.fixture
def leak_table(netns) -> Iterator[LeakTable]:
    t = LeakTable(netns.name)
    try:
        yield t
    finally:
        t.nft.close()


# -- split tunnelling (test_split_*.py) ------------------------------------
@pytest_asyncio.fixture
async def split(lab, tmp_path):
    """support.splitlab.SplitLab on the leak lab: started, torn down after the
    test, and its processes and cgroups gone even if the test or the start failed."""
    from support.splitlab import SplitLab

    s = SplitLab(lab, tmp_path)
    try:
        await s.start()
        yield s
    finally:
        try:
            await s.teardown()
            await s.nl.close()
        finally:
            s.close()
