"""Tests of the test infrastructure itself (tests/support, tests/conftest.py).

None of them needs the real netcfg service.  Where a service is needed, a
stand-in plays it, on the real test bus:

* ``StandIn``: a root connection of the test that owns
  ``net.openvpn.v3.netcfg`` and answers every method call (records them);
  it proves the policy file is loaded and enforced by dbus-daemon.
* ``FAKE_NETCFG``: a tiny ``python -m netcfg`` put first on PYTHONPATH, to
  exercise ``ServiceProcess`` and the ``service_factory`` fixture (start,
  name wait, Ping, SIGTERM, leak checks, private /dev/net/tun).
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from dbus_fast import Message, MessageType, Variant

from support import NETCFG_BUS_NAME, NETCFG_MANAGER_PATH, POLICY_FILE
from support.busdaemon import BusDaemon
from support.client import arun_client, client_runtime, run_client
from support.netns import (
    CLIENT_V4,
    CLIENT_V6,
    ROUTER_V4,
    ROUTER_V6,
    UPLINK_IF,
    Netns,
    assert_no_leaks,
    diff_snapshots,
)
from support.service import ServiceError, ServiceProcess
from support.dbuscalls import ACCESS_DENIED

DBUS = dict(
    destination="org.freedesktop.DBus",
    path="/org/freedesktop/DBus",
    interface="org.freedesktop.DBus",
)
MGR = dict(destination=NETCFG_BUS_NAME, path=NETCFG_MANAGER_PATH)
DEVICE_PATH = NETCFG_MANAGER_PATH + "/dev1"


def step(member, interface=NETCFG_BUS_NAME, path=NETCFG_MANAGER_PATH, **kw):
    return {
        "destination": NETCFG_BUS_NAME,
        "path": path,
        "interface": interface,
        "member": member,
        **kw,
    }


# Calls an unprivileged user may make (policy context="default") ...
ALLOWED_FOR_ALL = [
    step("Introspect", "org.freedesktop.DBus.Introspectable"),
    step("Get", "org.freedesktop.DBus.Properties", signature="ss",
         body=[NETCFG_BUS_NAME, "version"]),
    step("Ping", "org.freedesktop.DBus.Peer"),
    step("Ping", "org.freedesktop.DBus.Peer", path=DEVICE_PATH),
]
# ... and calls it may not (allowed for openvpn and root).
DENIED_FOR_OTHERS = [
    step("CreateVirtualInterface", signature="s", body=["tun-test"]),
    step("Set", "org.freedesktop.DBus.Properties", signature="ssv",
         body=[NETCFG_BUS_NAME, "log_level", {"variant": ["u", 6]}]),
    step("GetAll", "org.freedesktop.DBus.Properties", signature="s",
         body=[NETCFG_BUS_NAME]),
    step("Introspect", "org.freedesktop.DBus.Introspectable", path=DEVICE_PATH),
    step("Get", "org.freedesktop.DBus.Properties", path=DEVICE_PATH,
         signature="ss", body=["net.openvpn.v3.netcfg", "mtu"]),
    step("Destroy", "net.openvpn.v3.netcfg", path=DEVICE_PATH),
]


class StandIn:
    """Stand-in for netcfg on the test bus: a root connection owning the
    name, answering every call addressed to it and recording it."""

    def __init__(self, bus) -> None:
        self.bus = bus
        self.calls: list[Message] = []

    async def start(self) -> "StandIn":
        self.bus.add_message_handler(self.handle)
        reply = await self.bus.call(
            Message(**DBUS, member="RequestName", signature="su",
                    body=[NETCFG_BUS_NAME, 4])
        )
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body
        assert reply.body == [1], "root could not become primary owner"
        return self

    def handle(self, msg: Message):
        if msg.message_type != MessageType.METHOD_CALL:
            return None
        if msg.destination not in (NETCFG_BUS_NAME, self.bus.unique_name):
            return None
        self.calls.append(msg)
        if msg.member == "Get":
            return Message.new_method_return(msg, "v", [Variant("s", "stand-in")])
        if msg.member == "CreateVirtualInterface":
            return Message.new_method_return(msg, "o", [DEVICE_PATH])
        if msg.member == "Echo":
            return Message.new_method_return(
                msg, msg.signature, msg.body, unix_fds=list(msg.unix_fds)
            )
        return Message.new_method_return(msg)


# -- users, bus config -------------------------------------------------
def test_users_exist(users):
    for u in (users.openvpn, users.unprivileged):
        assert 0 < u.uid < 1000, f"{u.name} is not a system user"
        assert u.uid != 0
    assert users.openvpn.name == "openvpn"
    assert users.unprivileged.name == "netcfg-test"


def test_bus_config_is_system_type_with_our_policy(bus):
    text = bus.config_path.read_text()
    assert "<type>system</type>" in text
    assert f"<include>{POLICY_FILE}</include>" in text
    assert "<user>" not in text and "<fork" not in text
    assert bus.address == f"unix:path={bus.socket_path}"
    mode = os.stat(bus.socket_path.parent).st_mode
    assert stat.S_IMODE(mode) == 0o755
    assert bus.running


@pytest.mark.asyncio
async def test_root_connection(root_bus, users):
    reply = await root_bus.call(
        Message(**DBUS, member="GetConnectionUnixUser", signature="s",
                body=[root_bus.unique_name])
    )
    assert reply.body == [0]


def test_bus_start_stop_own_directory(users, tmp_path):
    d = tmp_path / "b"
    daemon = BusDaemon(d, extra_policy=["  <!-- extra -->"])
    with daemon:
        assert daemon.running
        assert "<!-- extra -->" in daemon.config_path.read_text()
        res = run_client(daemon.address, [{**DBUS, "member": "GetId"}])
        assert res[0]["ok"], res
    assert not daemon.running
    assert daemon.proc.returncode is not None


def test_bus_bad_policy_file_fails_loudly(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("<busconfig><policy")
    with pytest.raises(Exception, match="dbus-daemon"):
        BusDaemon(tmp_path / "b", policy_files=[bad]).start()


# -- the policy, through the client runner as real other users ---------
@pytest.mark.asyncio
async def test_policy_unprivileged_user(root_bus, bus, users):
    await StandIn(root_bus).start()
    res = await arun_client(
        bus.address,
        ALLOWED_FOR_ALL
        + DENIED_FOR_OTHERS
        + [{**DBUS, "member": "RequestName", "signature": "su",
            "body": [NETCFG_BUS_NAME, 4]}],
        user=users.unprivileged.name,
    )
    for st, r in zip(ALLOWED_FOR_ALL, res):
        assert r["ok"], (st, r)
    for st, r in zip(DENIED_FOR_OTHERS + [None], res[len(ALLOWED_FOR_ALL):]):
        assert not r["ok"] and r["error"] == ACCESS_DENIED, (st, r)


@pytest.mark.asyncio
@pytest.mark.parametrize("who", ["openvpn", "root"])
async def test_policy_openvpn_and_root_may_call_everything(root_bus, bus, users, who):
    stand_in = await StandIn(root_bus).start()
    res = await arun_client(
        bus.address,
        ALLOWED_FOR_ALL
        + DENIED_FOR_OTHERS
        # allowed to own the name: it is taken, so "exists" (3), not denied
        + [{**DBUS, "member": "RequestName", "signature": "su",
            "body": [NETCFG_BUS_NAME, 4]}],
        user=users.openvpn.name if who == "openvpn" else None,
    )
    assert all(r["ok"] for r in res), res
    assert res[-1]["body"] == [3]
    assert len(stand_in.calls) == len(ALLOWED_FOR_ALL + DENIED_FOR_OTHERS)


@pytest.mark.asyncio
async def test_bus_policy_fixture_adds_and_removes(bus, bus_policy, users):
    request = [{**DBUS, "member": "RequestName", "signature": "su",
                "body": ["net.openvpn.v3.log", 4]}]
    user = users.unprivileged.name
    res = await arun_client(bus.address, request, user=user)
    assert res[0]["error"] == ACCESS_DENIED
    path = bus_policy(
        "fake-log",
        f'<policy user="{user}"><allow own="net.openvpn.v3.log"/></policy>',
    )
    res = await arun_client(bus.address, request, user=user)
    assert res[0] == {**res[0], "ok": True, "body": [1]}, res
    bus.remove_policy(path)
    res = await arun_client(bus.address, request, user=user)
    assert res[0]["error"] == ACCESS_DENIED


# -- the client runner -------------------------------------------------
def test_client_runs_as_the_given_user(bus, users):
    for user, uid in ((users.unprivileged.name, users.unprivileged.uid),
                      (users.openvpn.name, users.openvpn.uid),
                      (None, 0)):
        res = run_client(
            bus.address,
            [
                {"unique_name": True},
                {**DBUS, "member": "GetConnectionUnixUser", "signature": "s",
                 "body": [{"ref": [0, 0]}]},
                {**DBUS, "member": "GetConnectionCredentials", "signature": "s",
                 "body": [{"ref": [0, 0]}]},
            ],
            user=user,
        )
        assert res[1]["body"] == [uid], res
        creds = res[2]["body"][0]
        assert creds["UnixUserID"] == {"variant": ["u", uid]}
        if user is not None:
            # no supplementary groups inherited from root
            assert creds["UnixGroupIDs"]["variant"][1] == [
                users.unprivileged.gid if uid == users.unprivileged.uid
                else users.openvpn.gid
            ]
    rt = client_runtime(users.unprivileged.name)
    assert os.path.isfile(rt.script)
    assert stat.S_IMODE(os.stat(rt.directory).st_mode) == 0o755


@pytest.mark.asyncio
async def test_client_refs_variants_bytes_fds(root_bus, bus, users):
    stand_in = await StandIn(root_bus).start()
    res = await arun_client(
        bus.address,
        [
            step("CreateVirtualInterface", signature="s", body=["tun-test"]),
            step("Echo", path={"ref": [0, 0]}, signature="sv",
                 body=["mtu", {"variant": ["q", 1400]}]),
            step("Echo", signature="ayav",
                 body=[{"bytes": "00ff10"},
                       [{"variant": ["as", ["a", "b"]]},
                        {"variant": ["(su)", ["x", 7]]}]]),
            step("Echo", signature="hh", body=[0, 1], fd=["udp4", "unix"]),
            step("Echo", path={"ref": [9, 0]}),
            step("Echo", path={"ref": [0, 5]}),
            {"sleep": 0.01},
        ],
        user=users.openvpn.name,
    )
    assert res[0]["body"] == [DEVICE_PATH] and res[0]["signature"] == "o"
    assert res[1]["body"] == ["mtu", {"variant": ["q", 1400]}]
    assert stand_in.calls[1].path == DEVICE_PATH
    assert stand_in.calls[1].body[1] == Variant("q", 1400)
    assert stand_in.calls[2].body[0] == b"\x00\xff\x10"
    assert res[2]["body"] == [
        {"bytes": "00ff10"},
        [{"variant": ["as", ["a", "b"]]}, {"variant": ["(su)", ["x", 7]]}],
    ]
    assert res[3]["body"] == [0, 1] and res[3]["fds"] == 2
    assert res[3]["fd_targets"][0].startswith("socket:")
    assert res[4]["error"] == res[5]["error"] == "client.BadRef"
    assert res[6] == {"ok": True}
    assert len(stand_in.calls[3].unix_fds) == 2
    for fd in stand_in.calls[3].unix_fds:
        os.close(fd)


def test_client_reports_errors(bus, users):
    res = run_client(
        bus.address,
        [
            {**DBUS, "member": "NoSuchMethod"},
            {"destination": "org.example.Nobody", "path": "/", "member": "X"},
            {**DBUS, "member": "GetId", "signature": "s", "body": [1]},
        ],
        user=users.unprivileged.name,
    )
    assert res[0]["error"] == "org.freedesktop.DBus.Error.UnknownMethod"
    assert res[0]["text"]
    assert res[1]["error"] == "org.freedesktop.DBus.Error.ServiceUnknown"
    assert res[2]["error"] == "client.BadMessage"


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["release", "terminate", "kill"])
async def test_client_hold(root_bus, bus, users, how):
    held = await arun_client(
        bus.address, [{"unique_name": True}], user=users.unprivileged.name, hold=True
    )
    name = held.results[0]["body"][0]

    async def has_owner() -> bool:
        reply = await root_bus.call(
            Message(**DBUS, member="NameHasOwner", signature="s", body=[name])
        )
        return reply.body[0]

    assert held.alive() and await has_owner()
    rc = await getattr(held, how)()
    assert rc == (-9 if how == "kill" else 0)
    for _ in range(100):
        if not await has_owner():
            break
        await asyncio.sleep(0.01)
    assert not await has_owner()


def test_client_hold_sync(bus, users):
    with run_client(bus.address, [], user=users.openvpn.name, hold=True) as held:
        assert held.results == [] and held.alive()
        assert held.release() == 0


def test_client_second_connection(bus, users):
    """"connection": N gives one process several connections: same UID and
    PID, different unique names; an index skipped ahead opens the ones between."""
    creds = {**DBUS, "member": "GetConnectionCredentials", "signature": "s"}
    res = run_client(
        bus.address,
        [
            {"unique_name": True},
            {"unique_name": True, "connection": 2},
            {"unique_name": True, "connection": 1},
            {**creds, "body": [{"ref": [0, 0]}]},
            {**creds, "body": [{"ref": [1, 0]}], "connection": 1},
            {"unique_name": True, "connection": -1},
        ],
        user=users.openvpn.name,
    )
    names = [r["body"][0] for r in res[:3]]
    assert len(set(names)) == 3, names
    first, second = res[3]["body"][0], res[4]["body"][0]
    assert first["ProcessID"] == second["ProcessID"]
    assert first["UnixUserID"] == second["UnixUserID"] == {"variant": ["u", users.openvpn.uid]}
    assert res[5]["error"] == "client.BadStep"


# -- network namespaces ------------------------------------------------
def test_netns_create_delete():
    ns = Netns.create()
    try:
        assert ns.exists()
        assert ns.link_names() == ["lo"]
        assert "UP" in ns.link("lo")["flags"]
        locals_ = {a["local"] for a in ns.addresses()}
        assert locals_ == {"127.0.0.1", "::1"}
        assert ns.netcfg_routes() == []
        r = ns.run(["cat", "/proc/self/net/dev"])
        assert "lo:" in r.stdout and "eth0" not in r.stdout
    finally:
        ns.delete()
    assert not ns.exists()
    ns.delete()  # idempotent


def test_netns_snapshot_detects_changes(netns):
    before = netns.snapshot()
    assert set(before) == {"links", "addrs", "routes", "rules"}
    assert_no_leaks(before, netns.snapshot())
    netns.ip("link", "add", "leak0", "type", "veth", "peer", "name", "leak1")
    netns.ip("link", "set", "leak0", "up")
    netns.ip("addr", "add", "198.51.100.1/24", "dev", "leak0")
    netns.ip("route", "add", "203.0.113.0/24", "dev", "leak0", "proto", "111")
    netns.ip("-6", "route", "add", "2001:db8:1::/64", "dev", "leak0",
             "proto", "111", "table", "100")
    netns.ip("rule", "add", "pref", "1000", "lookup", "100")
    d = diff_snapshots(before, netns.snapshot())
    assert set(d) == {"links", "addrs", "routes", "rules"}
    assert not any(v["removed"] for v in d.values())
    assert {dict(x)["ifname"] for x in d["links"]["added"]} == {"leak0", "leak1"}
    assert {r["dst"] for r in netns.netcfg_routes()} == {
        "203.0.113.0/24", "2001:db8:1::/64"}
    with pytest.raises(AssertionError, match="203.0.113.0/24"):
        assert_no_leaks(before, netns.snapshot())
    netns.ip("rule", "del", "pref", "1000")
    netns.ip("link", "del", "leak0")
    assert_no_leaks(before, netns.snapshot())


@pytest.mark.netns(uplink=True)
def test_netns_uplink(netns):
    assert netns.uplink == UPLINK_IF
    assert set(netns.link_names()) == {"lo", UPLINK_IF}
    locals_ = {a["local"] for a in netns.addresses(UPLINK_IF)}
    assert {CLIENT_V4, CLIENT_V6} <= locals_
    assert not any(a.get("tentative") for a in netns.addresses())
    defaults = {(r["family"], r.get("gateway")) for r in netns.all_routes("main")
                if r["dst"] == "default"}
    assert defaults == {(4, ROUTER_V4), (6, ROUTER_V6)}
    # Traffic crosses: UDP from the client namespace to a router listener.
    for fam, dst in (("AF_INET", ROUTER_V4), ("AF_INET6", ROUTER_V6)):
        listener = netns.router.popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import socket, sys
                s = socket.socket(socket.{fam}, socket.SOCK_DGRAM)
                s.bind(("{dst}", 4000)); s.settimeout(10)
                print("ready", flush=True)
                data, addr = s.recvfrom(100); print(data.decode(), addr[0])
            """)],
            stdout=subprocess.PIPE, text=True,
        )
        assert listener.stdout.readline().strip() == "ready"
        netns.run([sys.executable, "-c", textwrap.dedent(f"""
            import socket
            s = socket.socket(socket.{fam}, socket.SOCK_DGRAM)
            s.sendto(b"hello", ("{dst}", 4000))
        """)])
        out, _ = listener.communicate(timeout=15)
        assert out.split() == ["hello", CLIENT_V4 if fam == "AF_INET" else CLIENT_V6]
    router = netns.router
    netns.delete()
    assert not router.exists()


# -- ServiceProcess and the service fixtures, with a fake netcfg -------
FAKE_NETCFG = '''
import argparse, asyncio, os, signal, sys
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, method

p = argparse.ArgumentParser()
for a in ("--bus-address", "--log-level", "--log-file", "--idle-exit",
          "--state-dir", "--config", "--dns-backend"):
    p.add_argument(a)
p.add_argument("--fake-mode", default="ok")
args = p.parse_args()
log = open(args.log_file, "a", buffering=1)

class Manager(ServiceInterface):
    def __init__(self):
        super().__init__("net.openvpn.v3.netcfg")
    @method()
    def Version(self) -> "s":
        return "fake"

async def main():
    log.write(f"fake netcfg {os.getpid()} args {sys.argv[1:]}\\n")
    if args.fake_mode == "crash":
        raise RuntimeError("fake crash")
    if args.fake_mode == "hang":
        await asyncio.sleep(3600)
    bus = await MessageBus(bus_address=args.bus_address).connect()
    bus.export("/net/openvpn/v3/netcfg", Manager())
    stop = asyncio.Event()  # handler first: the fixture may signal as soon as the name is owned
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await bus.request_name("net.openvpn.v3.netcfg")
    await stop.wait()
    log.write("SIGTERM, exiting\\n")
    bus.disconnect()

asyncio.run(main())
'''


@pytest.fixture
def fake_env(tmp_path):
    pkg = tmp_path / "fake" / "netcfg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(FAKE_NETCFG)
    return dict(os.environ, PYTHONPATH=str(tmp_path / "fake"))


@pytest.mark.asyncio
async def test_service_process_fake(bus, netns, fake_env, tmp_path):
    svc = ServiceProcess(bus.address, netns.name, tmp_path / "svc", env=fake_env)
    await svc.start()
    try:
        assert svc.unique_name.startswith(":")
        await svc.assert_healthy()
        fds = svc.open_fds()
        assert fds >= 3
        # it runs inside the namespace, as root, and Popen.pid is python itself
        assert os.readlink(f"/proc/{svc.pid}/ns/net") != os.readlink(
            "/proc/self/ns/net")
        assert svc.pid in netns.pids()
        assert "python" in os.readlink(f"/proc/{svc.pid}/exe")
        assert "--idle-exit', '0'" in svc.log_text()
        assert await svc.stop() == 0
        assert "SIGTERM, exiting" in svc.log_text()
    finally:
        svc.kill()


@pytest.mark.asyncio
async def test_service_process_reports_failures(bus, netns, fake_env, tmp_path):
    crash = ServiceProcess(bus.address, netns.name, tmp_path / "c", env=fake_env,
                           extra_args=["--fake-mode", "crash"])
    with pytest.raises(ServiceError, match="(?s)exited with 1.*fake crash"):
        await crash.start()
    hang = ServiceProcess(bus.address, netns.name, tmp_path / "h", env=fake_env,
                          extra_args=["--fake-mode", "hang"])
    with pytest.raises(ServiceError, match="did not own"):
        await hang.start(timeout=1)
    assert await hang.wait(5) is not None


@pytest.mark.asyncio
async def test_service_private_tun(bus, netns, fake_env, tmp_path, users):
    host_mode = os.stat("/dev/net/tun").st_mode
    svc = ServiceProcess(bus.address, netns.name, tmp_path / "svc", env=fake_env,
                         private_tun=True)
    await svc.start()
    try:
        enter = ["nsenter", "-t", str(svc.pid), "-m", "-n", "--"]
        r = subprocess.run(enter + ["stat", "-c", "%a %t:%T", "/dev/net/tun"],
                           capture_output=True, text=True, check=True)
        assert r.stdout.split() == ["666", "a:c8"]
        # the machine's node is untouched
        assert os.stat("/dev/net/tun").st_mode == host_mode
        # the openvpn user can open it there
        u = users.openvpn
        r = subprocess.run(
            enter + ["setpriv", f"--reuid={u.uid}", f"--regid={u.gid}",
                     "--clear-groups", "/usr/bin/python3", "-c",
                     "import os; os.close(os.open('/dev/net/tun', os.O_RDWR))"],
            capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert await svc.stop() == 0
    finally:
        svc.kill()


@pytest.mark.asyncio
async def test_service_factory_with_fake(service_factory, netns, fake_env):
    svc = await service_factory(env=fake_env)
    await svc.assert_healthy()
    # restart: the fixture checks and stops every service it started
    assert await svc.stop() == 0
    svc2 = await service_factory(env=fake_env, extra_args=["--config", "/dev/null"])
    assert svc2.pid != svc.pid
    await svc2.assert_healthy()
