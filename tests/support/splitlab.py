"""Split tunnelling against real traffic: the leak lab's small internet, a
cgroup v2 subtree of the test's own, and prober processes placed in it.

The network is support/leaklab.py's (client, router behind the uplink, far
end behind the veth "tunnel" vpn0, OUTSIDE on both).  Added here:

* echo servers in the router and the far end: UDP and TCP port 9999 on
  OUTSIDE, UDP 53 on their own addresses (the router's is the uplink's
  resolver, the far end's the tunnel's), each answering "router saw
  ADDR" / "far saw ADDR": where the packet arrived and with which source
  address, and the answer proves that replies find their way back;
* `Prober`: a process in the client namespace that opens a socket per
  probe (so its cgroup is the socket's) and reports the answer; `fork`
  probes from a child forked at that moment, `child` leaves a child
  asleep until the prober exits (it waits on a pipe of its own, never on
  the prober's stdin: it would take the prober's next request).  Every
  answer is awaited within a bound (support/lines.py);
* `SplitLab.install()`: the module under test, driven directly as the
  service will: netcfg.split.placements in a cgroup base the test made,
  netcfg.split.rules through netcfg.kernel.nft, netcfg.split.routing's
  rules and routes through a real ledger; `teardown()` is the ledger's undo,
  the table's removal and the placements' close.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass

from pyroute2 import AsyncIPRoute

from netcfg.kernel import rtnl
from netcfg.kernel.batch import RouteBatcher
from netcfg.kernel.ledger import Ledger
from netcfg.kernel.libnft import Nft
from netcfg.kernel.netlink import Netlink
from netcfg.kernel.nft import NftTable
from netcfg.kernel.nftspec import TableContent
from netcfg.kernel.uplink import UplinkView, main_table
from netcfg.split import routing
from netcfg.split.cgroups import Group, Hierarchy, cgroup_in
from netcfg.split.placements import Mode, Placements
from netcfg.split.rules import SplitMarks, SplitRules, ruleset
from netcfg.state import Journal

from .leaklab import LAN4, LAN6, OUTSIDE4, OUTSIDE6, TUN4, TUN6, LeakLab
from .lines import ANSWER_TIMEOUT, read_line
from .netns import CLIENT_V4, CLIENT_V6
from .nsenter import enter, in_netns, inside

PORT, DNS_PORT = 9999, 53
UPLINK_SRC = {4: CLIENT_V4, 6: CLIENT_V6}
TUNNEL_SRC = {4: TUN4[0], 6: TUN6[0]}
PROBE_TIMEOUT = 3.0

ECHO = r"""
import socket, sys, threading
label = sys.argv[1]
def udp(addr, port):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        _, peer = s.recvfrom(512)
        s.sendto(f"{label} saw {peer[0]}".encode(), peer)
def tcp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.listen(1024)
    while True:
        c, peer = s.accept()
        try:
            c.sendall(f"{label} saw {peer[0].removeprefix('::ffff:')}".encode())
        except OSError:  # reset by a bench burst already
            pass
        c.close()
for spec in sys.argv[2:]:
    addr, port = spec.rsplit(",", 1)
    threading.Thread(target=udp, args=(addr, int(port)), daemon=True).start()
threading.Thread(target=tcp, args=(%d,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
""" % PORT

PROBER = r"""
import os, socket, sys
def probe(proto, dst, port):
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET,
                      socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    s.settimeout(%f)
    try:
        s.connect((dst, int(port)))
        if proto == "udp":
            s.send(b"probe")
        return "ok " + s.recv(512).decode()
    except OSError as e:
        return "failed " + type(e).__name__
    finally:
        s.close()
def burst(n, dst, port):  # n connections at once (bench/split.py): seconds until all are up, failures
    import resource, selectors, struct, time
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, max(n + 64, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    sel, socks, failed = selectors.DefaultSelector(), [], 0
    start = time.perf_counter()
    for _ in range(n):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((dst, port))
        sel.register(s, selectors.EVENT_WRITE)
        socks.append(s)
    pending = n
    while pending:
        ready = sel.select(10)
        if not ready:
            failed += pending
            break
        for key, _ in ready:
            failed += key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0
            sel.unregister(key.fileobj)
            pending -= 1
    elapsed = time.perf_counter() - start
    for s in socks:  # a reset, no TIME-WAIT: the next burst has its ports
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    return f"{elapsed:.6f} {failed}"
children = []  # write ends of the pipes the "child" children wait on
print("ready", flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "probe":
        out = probe(*args)
    elif cmd == "fork":
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            os.write(w, (probe(*args) + "\n").encode())
            os._exit(0)
        os.close(w)
        out = os.read(r, 512).decode().strip()
        os.close(r)
        os.waitpid(child, 0)
    elif cmd == "burst":
        out = burst(int(args[0]), args[1], int(args[2]))
    elif cmd == "child":  # a child that stays, asleep, until the prober exits
        # Not on stdin: the child would race us for the next request.  It
        # waits on a pipe of its own, whose write end only the prober
        # holds, and gives back our stdin and stdout (module doc).
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(w)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.read(r, 1)  # EOF when the prober exits
            os._exit(0)
        os.close(r)
        children.append(w)
        out = str(child)
    print(out, flush=True)
""" % PROBE_TIMEOUT


@dataclass(frozen=True)
class Answer:
    where: str | None  # "router" (the uplink), "far" (the tunnel), None (no answer)
    source: str | None  # the source address the far side saw

    def __str__(self) -> str:
        return f"{self.where} from {self.source}" if self.where else "no answer"


def answer(line: str) -> Answer:
    parts = line.split()
    if parts[:1] == ["ok"] and len(parts) == 4:
        return Answer(parts[1], parts[3])
    return Answer(None, None)


class Prober:
    """A process in the client namespace, probing on request (module doc)."""

    def __init__(self, nsname: str, user: tuple[int, int] | None = None) -> None:
        # Into the namespace as root, then the user's UIDs (setpriv execs too).
        as_user = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups"] if user else []
        self.proc = subprocess.Popen(["ip", "netns", "exec", nsname, *as_user, sys.executable, "-c", PROBER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid  # ip netns exec (and setpriv) exec: this is the prober itself
        ready = read_line(self.proc, f"the prober in {nsname} starting")  # exec'd into, as the user
        if ready != "ready":
            self.proc.kill()
            raise AssertionError(f"the prober in {nsname} did not start: {ready!r}")

    async def ask(self, line: str, timeout: float = ANSWER_TIMEOUT) -> str:
        """Send one request, wait for its one-line answer (at most `timeout` s:
        then the prober is killed and the test fails, support/lines.py)."""
        def talk() -> str:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
            return read_line(self.proc, f"prober {self.pid} answering {line!r}", timeout)
        return await asyncio.to_thread(talk)

    async def probe(self, proto: str, dst: str, port: int = PORT, fork: bool = False) -> Answer:
        return answer(await self.ask(f"{'fork' if fork else 'probe'} {proto} {dst} {port}"))

    def stop(self) -> None:
        """Close its stdin (it exits, and so does its "child"); kill it if it does not."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:  # BrokenPipeError: it is gone already
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()

    def cgroup(self) -> str:
        return cgroup_of(self.pid)


def cgroup_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        return cgroup_in(f.read())


PROBES = [(proto, dst) for proto in ("udp", "tcp") for dst in (OUTSIDE4, OUTSIDE6)]


def version(dst: str) -> int:
    return 6 if ":" in dst else 4


class SplitLab:
    def __init__(self, lab: LeakLab, tmp_path) -> None:
        self.lab = lab
        self.hierarchy = Hierarchy.find()
        self.base = f"/nctest-{secrets.token_hex(4)}"
        self.placements = Placements(self.hierarchy, self.base)
        self.nft = Nft(thread_init=lambda: enter(lab.client.name))
        self.table = NftTable()
        self.nl = Netlink()
        self.ledger = Ledger("split", self.nl, Journal(tmp_path))
        self.tables, self.marks = routing.SplitTables(), SplitMarks()
        self._echo: list[subprocess.Popen] = []
        self.probers: list[Prober] = []

    async def start(self) -> "SplitLab":
        self.nl.ipr = AsyncIPRoute(netns=self.lab.client.name)
        self.nl.routes = RouteBatcher()
        with inside(self.lab.client.name):
            self.nl.routes.open()
        await self.placements.start()
        self._echo_in(self.lab.router, "router", [f"{OUTSIDE4},{PORT}", f"{OUTSIDE6},{PORT}",
                                                  f"{LAN4},{DNS_PORT}", f"{LAN6},{DNS_PORT}"])
        self._echo_in(self.lab.far, "far", [f"{OUTSIDE4},{PORT}", f"{OUTSIDE6},{PORT}",
                                            f"{TUN4[1]},{DNS_PORT}", f"{TUN6[1]},{DNS_PORT}"])
        return self

    def _echo_in(self, ns, label: str, udp: list[str]) -> None:
        proc = ns.popen([sys.executable, "-c", ECHO, label, *udp], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, text=True)
        self._echo.append(proc)
        if read_line(proc, f"the echo server in {ns.name} starting") != "ready":
            raise AssertionError(f"the echo server in {ns.name} did not start")

    def prober(self, user: tuple[int, int] | None = None) -> Prober:
        p = Prober(self.lab.client.name, user)
        self.probers.append(p)
        return p

    def policy(self, include: bool = False, tunnel: bool = True, **kw) -> SplitRules:
        return SplitRules(bypass=self.placements.match(Mode.BYPASS), vpn_only=self.placements.match(Mode.VPN_ONLY),
                          include=include, tunnels=frozenset({self.lab.tunnel_index}) if tunnel else frozenset(),
                          marks=self.marks, **kw)

    async def install(self, policy: SplitRules, extra: TableContent = TableContent()) -> None:
        """The table (with `extra`, e.g. leak protection's chains), then routes and rules."""
        await self.table.replace(self.nft, ruleset(policy).merge(extra))
        tunnel = self.lab.tunnel_index if policy.tunnels else None
        view = UplinkView(await self._main_table())
        gateways = {socket.AF_INET: TUN4[1], socket.AF_INET6: TUN6[1]}  # a veth needs them; a tun would not
        await self.ledger.apply(routing.bypass_routes(self.tables, view)
                                + routing.vpn_routes(self.tables, tunnel, gateways))
        await self.ledger.apply(routing.policy_rules(self.tables, self.marks, policy.include))

    async def _main_table(self):
        sock = in_netns(self.lab.client.name, rtnl.dump_socket)
        try:
            return await main_table({self.lab.tunnel_index}, sock)
        finally:
            sock.close()

    async def place(self, prober: Prober, mode: Mode | None, caller_uid: int = 0) -> str:
        return await self.placements.place(prober.pid, mode, caller_uid)

    async def teardown(self) -> list[Exception]:
        errors = await self.ledger.undo()
        await self.table.remove(self.nft)
        errors += await self.placements.close()
        return errors

    def cgroups_left(self) -> list[str]:
        d = self.hierarchy.dir(self.base)
        return [root for root, _, _ in os.walk(d)]

    def close(self) -> None:
        """Whatever a failed test left: processes, cgroups, contexts."""
        for p in self.probers:
            p.stop()
        for proc in self._echo:
            proc.kill()
            proc.wait()
        for root, _dirs, _ in sorted(os.walk(self.hierarchy.dir(self.base)), key=lambda w: -len(w[0])):
            path = root[len(self.hierarchy.mount):] or "/"
            try:
                self.hierarchy.remove(Group(path))
            except Exception:  # noqa: BLE001 (best effort after a failure)
                pass
        self.nft.close()


async def wait_for(condition, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `condition()` until true (tests never sleep a fixed time)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
