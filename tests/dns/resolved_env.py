"""The real systemd-resolved, in a namespace of its own, for tests.

Debian's systemd-resolved runs here without systemd as PID 1.  What it
takes (measured; see shared/notes/resolved-in-a-namespace.md), step by
step as `ResolvedEnv.start()` does it:

1. The binary: Debian's package, downloaded and unpacked into a cache,
   never installed (installing rewires the machine's /etc/resolv.conf).
   The private libsystemd-shared must be the matching build
   (packages.systemd_resolved()).

2. A network namespace for resolved, and a second one, "the network", for
   the DNS servers.  They are joined by veth pairs:

       resolved's side            server side
       eth0  192.0.2.2/24   <->   up0        192.0.2.1    the system's DNS server
       vpn0  10.8.0.2/24    <->   vpn0-peer  10.8.0.1     VPN DNS server #1
             fd00:8::2/64                    fd00:8::1    (IPv6, answers differently)
       vpn1  10.9.0.2/24    <->   vpn1-peer  10.9.0.1     VPN DNS server #2

   resolved needs a non-loopback link that is up, has carrier and a
   routable address, or it reports the network down and the stub answers
   SERVFAIL: eth0 with a default route is that link.  The servers must
   sit behind the links, not in resolved's own namespace, because resolved
   binds each per-link DNS socket to its link (SO_BINDTODEVICE): a query
   for vpn0's server really leaves through vpn0.  The vpnN links stand in
   for tun devices (the backend only needs an interface name; the service
   end-to-end test uses a real tun).

3. A mount namespace (nsenv.Namespace): /sys remounted (else
   /sys/class/net lists the host's links), a tmpfs on /run (resolved, run
   as root, creates /run/systemd/resolve itself; a pre-created root-owned
   one makes it refuse to start; then it drops to the systemd-resolve
   user), and an overlay on /etc holding: passwd/group entries for
   systemd-resolve, and a resolv.conf pointing at the stub 127.0.0.53
   (otherwise resolved imports the machine's real servers as "foreign"
   configuration).

4. A private system-type dbus-daemon at /run/dbus/system_bus_socket inside
   the namespace, with Debian's default system policy, resolved's own bus
   policy from the package, netcfg's policy (for service tests), and a
   servicedir holding a .service file for org.freedesktop.resolve1:
   dbus-daemon looks for an activation file before checking whether a name
   is owned, so StartServiceByName and ListActivatableNames need it even
   though resolved is already running.

5. resolved's configuration as a drop-in in /run/systemd/resolved.conf.d/:
   DNS= the system server, an EMPTY FallbackDNS= (otherwise the compiled-in
   public servers are used), no cache (each lookup must reach a server so
   the test sees who answered), no LLMNR/mDNS/DNSSEC, no /etc/hosts.

6. The DNS servers (dnsserver.py): each answers every A query with its own
   fixed address, so `query(name)` tells which server resolved asked.

Root callers need no polkit: the tests drive the backend as root.
"""

from __future__ import annotations

import os
import grp
import json
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import packages
from support.busdaemon import DEFAULT_POLICY
from nsenv import PYTHON, SCRATCH, Namespace, NamespaceError, _readline

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUS_SOCKET = "/run/dbus/system_bus_socket"
BUS_ADDRESS = f"unix:path={BUS_SOCKET}"
STATE_DIR = f"{SCRATCH}/state"

SYSTEM = "system"
# label -> (listen address on the server side, the A address it answers)
SERVERS = {
    SYSTEM: ("192.0.2.1", "198.51.100.1"),
    "vpn0": ("10.8.0.1", "198.51.100.2"),
    "vpn0-v6": ("fd00:8::1", "198.51.100.22"),
    "vpn1": ("10.9.0.1", "198.51.100.3"),
}
ANSWERS = {answer: label for label, (_, answer) in SERVERS.items()}

_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{scratch}/services</servicedir>
{default_policy}
  <include ignore_missing="yes">{resolved_policy}</include>
  <include ignore_missing="yes">{netcfg_policy}</include>
</busconfig>
"""

_SERVICE_FILE = """[D-BUS Service]
Name=org.freedesktop.resolve1
Exec=/bin/false
User=root
"""

_RESOLVED_CONF = """[Resolve]
DNS={system}
FallbackDNS=
Domains=
Cache=no
LLMNR=no
MulticastDNS=no
DNSSEC=no
DNSOverTLS=no
ReadEtcHosts=no
DNSStubListener=yes
"""


def _free_id(used: set[int]) -> int:
    for candidate in range(999, 100, -1):
        if candidate not in used:
            return candidate
    raise NamespaceError("no free system uid/gid for systemd-resolve")


class ResolvedEnv:
    def __init__(self) -> None:
        self.server_ns = f"ncdns-{secrets.token_hex(3)}"
        self.logdir = Path(tempfile.mkdtemp(prefix="netcfg-resolved-env-"))
        self.pkg: packages.Resolved | None = None
        self.ns: Namespace | None = None
        self.resolved: subprocess.Popen | None = None
        self.servers: list[subprocess.Popen] = []

    # -- set-up --

    def start(self) -> "ResolvedEnv":
        self.pkg = packages.systemd_resolved()
        subprocess.run(["ip", "netns", "add", self.server_ns], check=True)
        try:
            self.ns = Namespace(net=True, pre_mount=self._links_script()).start()
            self._server_side()
            self._files()
            self._start_bus()
            self._start_dns_servers()
            self.start_resolved()
        except BaseException:
            self.stop()
            raise
        return self

    def _links_script(self) -> str:
        # Runs inside the new network namespace while /run/netns is still visible.
        s = self.server_ns
        return f"""
ip link add eth0 type veth peer name up0 netns {s}
ip addr add 192.0.2.2/24 dev eth0
ip link set eth0 up
ip route add default via 192.0.2.1
ip link add vpn0 type veth peer name vpn0-peer netns {s}
ip addr add 10.8.0.2/24 dev vpn0
ip -6 addr add fd00:8::2/64 dev vpn0 nodad
ip link set vpn0 up
ip link add vpn1 type veth peer name vpn1-peer netns {s}
ip addr add 10.9.0.2/24 dev vpn1
ip link set vpn1 up
"""

    def _server_side(self) -> None:
        s = self.server_ns
        for cmd in (["link", "set", "lo", "up"],
                    ["addr", "add", "192.0.2.1/24", "dev", "up0"], ["link", "set", "up0", "up"],
                    ["addr", "add", "10.8.0.1/24", "dev", "vpn0-peer"],
                    ["-6", "addr", "add", "fd00:8::1/64", "dev", "vpn0-peer", "nodad"],
                    ["link", "set", "vpn0-peer", "up"],
                    ["addr", "add", "10.9.0.1/24", "dev", "vpn1-peer"], ["link", "set", "vpn1-peer", "up"]):
            subprocess.run(["ip", "-n", s, *cmd], check=True, capture_output=True)

    def _files(self) -> None:
        ns = self.ns
        uid = _free_id({p.pw_uid for p in pwd.getpwall()})
        gid = _free_id({g.gr_gid for g in grp.getgrall()})
        ns.sh(f"""
grep -q '^systemd-resolve:' /etc/passwd || echo 'systemd-resolve:x:{uid}:{gid}:systemd Resolver:/:/usr/sbin/nologin' >> /etc/passwd
grep -q '^systemd-resolve:' /etc/group || echo 'systemd-resolve:x:{gid}:' >> /etc/group
mkdir -p /run/dbus {SCRATCH}/services /run/systemd/resolved.conf.d
""")
        ns.write("/etc/resolv.conf", "nameserver 127.0.0.53\noptions edns0 trust-ad\n")
        ns.write(f"{SCRATCH}/bus.conf", _BUS_CONF.format(
            socket=BUS_SOCKET, scratch=SCRATCH, resolved_policy=self.pkg.bus_policy,
            netcfg_policy=REPO / "dbus-policy" / "net.openvpn.v3.netcfg.conf", default_policy=DEFAULT_POLICY))
        ns.write(f"{SCRATCH}/services/org.freedesktop.resolve1.service", _SERVICE_FILE)
        ns.write("/run/systemd/resolved.conf.d/netcfg-test.conf", _RESOLVED_CONF.format(system=SERVERS[SYSTEM][0]))

    def _start_bus(self) -> None:
        with open(self.logdir / "dbus-daemon.log", "w") as log:
            proc = self.ns.popen("dbus-daemon", f"--config-file={SCRATCH}/bus.conf", "--nofork", "--nopidfile",
                                 "--print-address", stdout=subprocess.PIPE, stderr=log, text=True)
        if not _readline(proc.stdout, 10).startswith("unix:"):
            raise NamespaceError(f"dbus-daemon did not start:\n{(self.logdir / 'dbus-daemon.log').read_text()}")

    def _start_dns_servers(self) -> None:
        for label, (listen, answer) in SERVERS.items():
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.server_ns, PYTHON, str(HERE / "dnsserver.py"),
                 "--listen", listen, "--answer", answer, "--log", str(self.logdir / f"queries-{label}.log")],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
            self.servers.append(proc)
            line = _readline(proc.stdout, 10)
            if line.strip() != "ready":
                raise NamespaceError(f"DNS server {label} on {listen} did not start: {line}{proc.stdout.read()}")

    def start_resolved(self, forget_links: bool = False) -> None:
        """Start resolved and wait until its stub answers through one of our servers.

        `forget_links`: remove the per-link state resolved keeps across its
        own restarts (/run/systemd/resolve/netif), as after a reboot."""
        if forget_links:
            self.ns.sh("rm -rf /run/systemd/resolve/netif")
        with open(self.logdir / "resolved.log", "a") as log:
            self.resolved = self.ns.popen(str(self.pkg.binary), env={**self.pkg.env(), "SYSTEMD_LOG_LEVEL": "debug"},
                                          stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.resolved.poll() is not None:
                raise NamespaceError(f"systemd-resolved exited {self.resolved.returncode}:\n{self.log()}")
            # Any of our servers will do: a client may have re-applied VPN settings already.
            if self.has_owner() and self.query("probe.example", timeout=1) in ANSWERS:
                return
            time.sleep(0.1)
        raise NamespaceError(f"systemd-resolved did not come up within 10 s:\n{self.log()[-4000:]}")

    def stop_resolved(self) -> None:
        if self.resolved is not None:
            self.resolved.terminate()
            self.resolved.wait(10)
            self.ns.children.remove(self.resolved)
            self.resolved = None
        deadline = time.monotonic() + 5
        while self.has_owner() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.servers:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            proc.wait(5)
            proc.stdout.close()
        self.servers.clear()
        if self.ns is not None:
            self.ns.stop()
            self.ns = None
        subprocess.run(["ip", "netns", "del", self.server_ns], capture_output=True)
        if not os.environ.get("NETCFG_KEEP_TEST_LOGS"):
            shutil.rmtree(self.logdir, ignore_errors=True)

    # -- looking at it --

    def log(self) -> str:
        path = self.logdir / "resolved.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def busctl(self, *args: str, check: bool = True) -> str:
        return self.ns.run("busctl", "--system", *args, check=check).stdout

    def has_owner(self, name: str = "org.freedesktop.resolve1") -> bool:
        out = self.busctl("call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                          "NameHasOwner", "s", name, check=False)
        return out.strip() == "b true"

    def resolvectl(self, *args: str) -> str:
        return self.ns.run(str(self.pkg.resolvectl), *args, env=self.pkg.env()).stdout

    def link(self, ifname: str) -> dict[str, str]:
        """resolved's view of one link: dns, domain, default-route, dnssec, dnsovertls."""
        view = {}
        for key in ("dns", "domain", "default-route", "dnssec", "dnsovertls"):
            out = self.resolvectl(key, ifname).strip()
            view[key] = out.split(":", 1)[1].strip() if ":" in out else ""
        return view

    def query(self, name: str, timeout: float = 5) -> str:
        """The A address resolved's stub returns for `name` ("rcode=N", "timeout" on failure)."""
        return self.ns.run(PYTHON, str(HERE / "dnsserver.py"), "--query", name, "--server", "127.0.0.53",
                           "--timeout", str(timeout)).stdout.strip()

    def who_answers(self, name: str) -> str:
        """Which server resolved asked for `name`: "system", "vpn0", "vpn0-v6", "vpn1"."""
        answer = self.query(name)
        return ANSWERS.get(answer, answer)

    def revert_all(self) -> None:
        for ifname in ("vpn0", "vpn1"):
            ifindex = self.ns.run("cat", f"/sys/class/net/{ifname}/ifindex").stdout.strip()
            self.busctl("call", "org.freedesktop.resolve1", "/org/freedesktop/resolve1",
                        "org.freedesktop.resolve1.Manager", "RevertLink", "i", ifindex, check=False)

    # -- the code under test --

    def runner(self, **start):
        """netcfg's DNS core inside the namespace, on this bus (tests/dns/runner.py)."""
        args = {"backend": "systemd-resolved", "bus": BUS_ADDRESS, "state_dir": STATE_DIR, **start}
        return self.ns.runner(**args)

    # -- the netcfg service and a VPN client, inside the namespace --

    def service(self, *extra: str) -> "NetcfgService":
        """netcfg on this bus with the systemd-resolved backend (the service end-to-end tests)."""
        return NetcfgService(self, list(extra)).start()

    def vpn_client(self, servers, domains=(), scope="global", answer="198.51.100.9") -> "VpnClient":
        return VpnClient(self, list(servers), list(domains), scope, answer)


class NetcfgService:
    def __init__(self, env: ResolvedEnv, extra: list[str]) -> None:
        self.env = env
        self.log_path = env.logdir / f"netcfg-{secrets.token_hex(2)}.log"
        self.argv = [PYTHON, "-m", "netcfg", "--bus-address", BUS_ADDRESS, "--dns-backend", "systemd-resolved",
                     "--state-dir", f"{SCRATCH}/netcfg-state", "--log-file", str(self.log_path),
                     "--log-level", "6", "--idle-exit", "0", *extra]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "NetcfgService":
        with open(self.log_path.with_suffix(".out"), "w") as out:
            self.proc = self.env.ns.popen(*self.argv, env={"PYTHONPATH": str(REPO)}, stdout=out,
                                          stderr=subprocess.STDOUT, cwd=str(REPO))
        deadline = time.monotonic() + 10
        while not self.env.has_owner("net.openvpn.v3.netcfg"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise NamespaceError(f"netcfg did not come up:\n{self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.log_path, self.log_path.with_suffix(".out"))
                 if p.exists()]
        return "\n".join(parts)

    def stop(self) -> int:
        """SIGTERM; the exit code (0 expected)."""
        self.proc.terminate()
        rc = self.proc.wait(15)
        self.env.ns.children.remove(self.proc)
        return rc


class VpnClient:
    """tests/dns/vpnclient.py in the namespace: a device established with DNS, answering on its tun."""

    def __init__(self, env: ResolvedEnv, servers, domains, scope, answer) -> None:
        argv = [PYTHON, str(HERE / "vpnclient.py"), "--bus", BUS_ADDRESS, "--servers", *servers,
                "--scope", scope, "--answer", answer]
        if domains:
            argv += ["--domains", *domains]
        self.err_path = env.logdir / f"vpnclient-{secrets.token_hex(2)}.err"
        with open(self.err_path, "w") as err:  # a file: an undrained pipe would block the client
            self.proc = env.ns.popen(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        line = _readline(self.proc.stdout, 30)
        if not line:
            raise NamespaceError(f"vpnclient gave no answer:\n{self.err_path.read_text()}")
        self.result = json.loads(line)

    def request(self, what: str) -> dict:
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        line = _readline(self.proc.stdout, 30)
        if not line:
            raise NamespaceError(f"vpnclient: no reply to {what} within 30 s")
        return json.loads(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()
