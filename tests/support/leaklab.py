"""A small internet in namespaces, for the leak-protection tests: real traffic.

::

    container (-c)             client (the namespace under test)        router (-r)
    eth0 172.30.0.2/24  ---  ctr0 172.30.0.1/24                         (the ISP and the LAN)
         fd00:30::2/64            fd00:30::1/64   forwarding on
                             uplink0 192.0.2.2/24, 2001:db8:ff::2/64  --- down0 192.0.2.1, 2001:db8:ff::1
                                default via the router                     lo: OUTSIDE, SERVER
                             vpn0 10.8.0.2/24, fd00:8::2/64  ----------- far (-v): vpnfar 10.8.0.1, fd00:8::1
                                                                           lo: OUTSIDE too

* OUTSIDE (203.0.113.7, 2001:db8:7::7) is "the internet": it is on both the
  router's and the far end's lo, so where a probe to it arrives tells which
  way it went: the router = through the uplink (a leak while protection
  holds), far = through the tunnel.
* SERVER (198.51.100.1, 2001:db8:100::1) is the VPN server, on the router,
  reached by host routes via the uplink (what ProtectSocket's host-route
  method installs): only a marked socket may reach it under protection.
* The router's own addresses are the LAN: its resolver ports (53 UDP/TCP,
  853 TCP) and a non-DNS service (port 7).
* ``vpn0`` is a stand-in for a tunnel: a veth to the far end (a tun would
  need a user-space reader to carry TCP both ways).  Tests of the service
  use the real tun netcfg creates.

What arrives: a "witness" table in the router and in the far end records
(protocol, source port) of every UDP/TCP packet that reaches it, in
prerouting, before anything there could refuse it.  Every probe has its own
source port, so ``check()`` knows where each probe went, TCP included (a
SYN that arrives is seen even if no answer comes back).  TCP listeners in
both (ports 7, 53, 853, 1194) let a handshake complete.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace

from .lines import read_line
from .netns import Netns
from .nsenter import in_netns

OUTSIDE4, OUTSIDE6 = "203.0.113.7", "2001:db8:7::7"
SERVER4, SERVER6 = "198.51.100.1", "2001:db8:100::1"
LAN4, LAN6 = "192.0.2.1", "2001:db8:ff::1"  # the router: resolver and LAN service
TUNNEL_IF, FAR_IF = "vpn0", "vpnfar"
TUN4, TUN6 = ("10.8.0.2", "10.8.0.1"), ("fd00:8::2", "fd00:8::1")  # (ours, far end)
CTR_IF, CTR_PEER_IF = "ctr0", "eth0"
CTR4, CTR6 = ("172.30.0.1", "172.30.0.2"), ("fd00:30::1", "fd00:30::2")  # (client, container)
VPN_PORT, LAN_SERVICE_PORT = 1194, 7
TCP_PORTS = (LAN_SERVICE_PORT, 53, 853, VPN_PORT)
MARK = 0x4F56
TCP_WAIT = 1.5  # s a TCP probe waits for its handshake (a drop shows as a timeout)
REDIRECT4, REDIRECT6 = ("0.0.0.0/1", "128.0.0.0/1"), ("::/1", "8000::/1")

WITNESS = """
table inet witness {
    set seen { type inet_proto . inet_service; flags dynamic; size 65535; }
    chain prerouting {
        type filter hook prerouting priority -400; policy accept;
        meta l4proto { tcp, udp } add @seen { meta l4proto . th sport }
    }
}
"""
LISTENER = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.listen(256); sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        key.fileobj.accept()[0].close()
"""


@dataclass(frozen=True)
class Probe:
    proto: str  # "udp" | "tcp"
    dst: str
    port: int
    src: str = "client"  # or "container"
    mark: int | None = None
    sport: int | None = None  # fixed (DHCP's 68, DHCPv6's 546); else assigned per run

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.dst else socket.AF_INET

    def __str__(self) -> str:
        v = 6 if self.family == socket.AF_INET6 else 4
        mark = f" mark {self.mark:#x}" if self.mark else ""
        return f"{self.proto}{v} {self.src} -> [{self.dst}]:{self.port}{mark}"


def both(dst4: str, dst6: str, port: int, protos=("udp", "tcp"), **kw) -> list[Probe]:
    """The probe to `port` over each protocol and family."""
    return [Probe(p, d, port, **kw) for p in protos for d in (dst4, dst6)]


class LeakLab:
    def __init__(self, client: Netns, router: Netns, far: Netns, container: Netns | None) -> None:
        self.client, self.router, self.far, self.container = client, router, far, container
        self._ports = itertools.count(20000)
        self._listeners: list[subprocess.Popen] = []

    # -- building --------------------------------------------------------
    @classmethod
    def build(cls, client: Netns, container: bool = False) -> "LeakLab":
        router = client.add_uplink()
        far = Netns.create(name=f"{client.name}-v")
        lab = cls(client, router, far, None)
        try:
            for ns in (router, far):
                for addr in (f"{OUTSIDE4}/32", f"{OUTSIDE6}/128"):
                    ns.ip("addr", "add", addr, "dev", "lo")
            router.ip("addr", "add", f"{SERVER4}/32", "dev", "lo")
            router.ip("addr", "add", f"{SERVER6}/128", "dev", "lo")
            _veth(client, TUNNEL_IF, far, FAR_IF, TUN4, TUN6)
            far.ip("-4", "route", "add", "default", "via", TUN4[0])
            far.ip("-6", "route", "add", "default", "via", TUN6[0])
            client.ip("route", "add", SERVER4, "via", LAN4)
            client.ip("route", "add", SERVER6, "via", LAN6)
            if container:
                lab.container = Netns.create(name=f"{client.name}-c")
                _veth(client, CTR_IF, lab.container, CTR_PEER_IF, CTR4, CTR6)
                lab.container.ip("-4", "route", "add", "default", "via", CTR4[0])
                lab.container.ip("-6", "route", "add", "default", "via", CTR6[0])
                client.sysctl("net.ipv4.ip_forward", "1")
                client.sysctl("net.ipv6.conf.all.forwarding", "1")
                # The way back to the container, from the ISP and from the VPN.
                router.ip("route", "add", "172.30.0.0/24", "via", "192.0.2.2")
                router.ip("route", "add", "fd00:30::/64", "via", "2001:db8:ff::2")
            for ns in (router, far):
                ns.run(["nft", "-f", "-"], input=WITNESS)
                lab._listen(ns)
        except BaseException:
            lab.delete()
            raise
        return lab

    def _listen(self, ns: Netns) -> None:
        proc = ns.popen([sys.executable, "-c", LISTENER, *map(str, TCP_PORTS)],
                        stdout=subprocess.PIPE, text=True)
        self._listeners.append(proc)
        if read_line(proc, f"the TCP listener in {ns.name} starting") != "ready":
            raise AssertionError(f"the TCP listener in {ns.name} did not start")

    def delete(self) -> None:
        for proc in self._listeners:
            proc.kill()
            proc.wait()
        for ns in (self.far, self.container):
            if ns is not None:
                ns.delete()

    @property
    def tunnel_index(self) -> int:
        return self.client.link(TUNNEL_IF)["ifindex"]

    def redirect(self, ipv4: bool = True, ipv6: bool = True) -> None:
        """Send "the internet" through vpn0 (the /1 pairs of redirect-gateway def1)."""
        for on, nets, gw in ((ipv4, REDIRECT4, TUN4[1]), (ipv6, REDIRECT6, TUN6[1])):
            if on:
                for net in nets:
                    self.client.ip("route", "replace", net, "via", gw, "dev", TUNNEL_IF)

    def unredirect(self) -> None:
        for net in REDIRECT4 + REDIRECT6:
            self.client.ip("route", "del", net, check=False)

    # -- probing ---------------------------------------------------------
    async def check(self, expected: dict[Probe, str | None], timeout: float = 10.0) -> dict[Probe, str | None]:
        """Send every probe at once; return where each arrived ("router", "far" or None).

        Waits until every probe `expected` somewhere has arrived (or
        `timeout`), then reads the witnesses once more.  A probe that is
        dropped in this host's output hook fails in sendto() or its SYN
        never leaves, so by the time the expected ones are in, a leaked
        one would be too: veth delivery happens within the sender's
        system call.  The neighbour caches are flushed first, so IPv6
        probes also need neighbour discovery to get out.
        """
        self.clear_witnesses()
        for ns in (self.client, self.container):
            if ns is not None:
                ns.ip("neigh", "flush", "all")
        probes = [p if p.sport else replace(p, sport=next(self._ports)) for p in expected]
        by_port = {(p.proto, p.sport): original for p, original in zip(probes, expected)}
        await self._send(probes)
        want = {k for k, p in by_port.items() if expected[p]}
        deadline = time.monotonic() + timeout
        while True:
            seen = self._seen()
            if want <= seen.keys() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        return {p: seen.get(k) for k, p in by_port.items()}

    def clear_witnesses(self) -> None:
        for ns in (self.router, self.far):
            ns.run(["nft", "flush", "set", "inet", "witness", "seen"])

    def _seen(self) -> dict[tuple[str, int], str]:
        seen = {}
        for label, ns in (("router", self.router), ("far", self.far)):
            listing = json.loads(ns.run(["nft", "-j", "list", "set", "inet", "witness", "seen"]).stdout)
            for item in listing["nftables"]:
                for elem in item.get("set", {}).get("elem", []):
                    proto, port = elem["concat"]
                    seen[(proto, port)] = label
        return seen

    async def _send(self, probes: list[Probe]) -> None:
        sockets = []
        for src in ("client", "container"):
            mine = [p for p in probes if p.src == src]
            if mine:
                ns = self.client if src == "client" else self.container
                sockets += zip(mine, in_netns(ns.name, _sockets, mine))
        try:
            tcp = []
            for probe, sock in sockets:
                if probe.proto == "udp":
                    try:
                        sock.sendto(b"probe", (probe.dst, probe.port))
                    except OSError:
                        pass  # EPERM: dropped by a netfilter hook on the way out
                else:
                    tcp.append(_connect(sock, probe))
            await asyncio.gather(*tcp)
        finally:
            for _, sock in sockets:
                sock.close()


class ProbeStream:
    """UDP probes sent without pause, in turn to each destination, from a
    thread, until stopped: each destination has its own socket and source
    port, counts of sendto() that went out and that were refused (EPERM:
    dropped in this host's output hook), and the witnesses tell where any
    that went out arrived (``LeakLab.seen_stream``)."""

    def __init__(self, lab: "LeakLab", destinations: dict[str, int]) -> None:
        self.lab, self.ports = lab, destinations  # destination -> source port
        self.sent = {d: 0 for d in destinations}
        self.refused = {d: 0 for d in destinations}
        self._stop = threading.Event()
        self._sockets = in_netns(lab.client.name, self._open)
        self._thread = threading.Thread(target=self._run, name="probe-stream")

    def _open(self) -> dict:
        out = {}
        for dst, sport in self.ports.items():
            family = socket.AF_INET6 if ":" in dst else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
            out[dst] = s
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            for dst, sock in self._sockets.items():
                try:
                    sock.sendto(b"stream", (dst, 9))
                    self.sent[dst] += 1
                except PermissionError:
                    self.refused[dst] += 1

    def __enter__(self) -> "ProbeStream":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for s in self._sockets.values():
            s.close()

    def total(self) -> int:
        return sum(self.sent.values()) + sum(self.refused.values())

    def arrived(self) -> dict[str, str | None]:
        """Destination -> where its probes arrived ("router", "far", None)."""
        seen = self.lab._seen()
        return {dst: seen.get(("udp", port)) for dst, port in self.ports.items()}

    def __str__(self) -> str:
        return f"sent {self.sent}, refused {self.refused}, arrived {self.arrived()}"


async def _connect(sock: socket.socket, probe: Probe) -> None:
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (probe.dst, probe.port)), TCP_WAIT)
    except (OSError, asyncio.TimeoutError):
        pass
    # Close with a reset: no retransmitted SYN may arrive after the check.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def _sockets(probes: list[Probe]) -> list[socket.socket]:
    """Made inside the probe's namespace (in_netns)."""
    out = []
    for p in probes:
        s = socket.socket(p.family, socket.SOCK_DGRAM if p.proto == "udp" else socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if p.mark:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, p.mark)
        s.bind(("::" if p.family == socket.AF_INET6 else "0.0.0.0", p.sport))
        s.setblocking(False)
        out.append(s)
    return out


def _veth(a: Netns, a_if: str, b: Netns, b_if: str, v4: tuple[str, str], v6: tuple[str, str]) -> None:
    """veth a_if (in a, first addresses) <-> b_if (in b, second addresses), /24 and /64, up."""
    a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
    a.ip("addr", "add", f"{v4[0]}/24", "dev", a_if)
    a.ip("addr", "add", f"{v6[0]}/64", "dev", a_if, "nodad")
    b.ip("addr", "add", f"{v4[1]}/24", "dev", b_if)
    b.ip("addr", "add", f"{v6[1]}/64", "dev", b_if, "nodad")
    a.ip("link", "set", a_if, "up")
    b.ip("link", "set", b_if, "up")
