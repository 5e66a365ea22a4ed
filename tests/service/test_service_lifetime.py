"""The service's own life (issue 3): SIGTERM and SIGINT tear everything
down and exit 0; after a SIGKILL the next start undoes what the journal in
--state-dir lists; idle exit happens only without devices.

Devices are made over the test's root connection, which keeps the tun fds:
a tun that is gone although its fd is still open was removed by netcfg, not
by the kernel.
"""

from __future__ import annotations

import os
import re
import signal
import socket

import pytest
from dbus_fast import Message

from support import NETCFG_BUS_NAME, NETCFG_MANAGER_PATH
from support.lifecycle import (
    NETWORKS, REMOTE, Netcfg, global_addresses, log_problems, route_set, tun_links, tun_name, wait_until,
)
from support.netns import ROUTER_V4, UPLINK_IF

pytestmark = pytest.mark.asyncio

EXCLUDE = ["203.0.113.0", 24, -1, False, True]
SECOND_ADDR4 = ["10.9.0.2", 24, "10.9.0.1", False]
SECOND_NETWORKS = [["10.50.0.0", 16, -1, False, False]]


async def protect(nc: Netcfg, path: str) -> None:
    """ProtectSocket for REMOTE with a UDP socket: a host route via the uplink."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        reply = await nc.bus.call(Message(
            destination=NETCFG_BUS_NAME, path=NETCFG_MANAGER_PATH, interface=NETCFG_BUS_NAME,
            member="ProtectSocket", signature="sbo", body=[REMOTE[0], False, path], unix_fds=[s.fileno()]))
    assert reply.body == [True], (reply.error_name, reply.body)


async def establish_two(nc: Netcfg) -> tuple[list[int], list[str]]:
    """Two established devices (one with exclude, def1 and a protected
    socket), one that is only created.  Returns the fds and the paths."""
    p1 = await nc.create("first")
    await nc.configure(p1, networks=NETWORKS + [EXCLUDE], reroute_ipv4=True, reroute_ipv6=True)
    await protect(nc, p1)
    fd1 = await nc.establish(p1)
    p2 = await nc.create("second")
    await nc.configure(p2, addresses=[SECOND_ADDR4], networks=SECOND_NETWORKS)
    fd2 = await nc.establish(p2)
    p3 = await nc.create("third")
    return [fd1, fd2], [p1, p2, p3]


def assert_established(netns, fds: list[int]) -> None:
    names = sorted(tun_name(fd) for fd in fds)
    assert sorted(l["ifname"] for l in tun_links(netns)) == names
    routes = route_set(netns)
    assert (f"{EXCLUDE[0]}/{EXCLUDE[1]}", ROUTER_V4, UPLINK_IF, 0) in routes
    assert (REMOTE[0], ROUTER_V4, UPLINK_IF, 1) in routes  # metric: one per caller (docs/protect.md)
    assert ("10.50.0.0/16", SECOND_ADDR4[2], tun_name(fds[1]), 0) in routes


def assert_clean(netns) -> None:
    assert tun_links(netns) == []
    assert route_set(netns) == set()
    assert {a for a in global_addresses(netns) if a[0] != UPLINK_IF} == set()


def journal_files(svc) -> list[str]:
    return sorted(p.name for p in svc.state_dir.glob("ledger-*"))


@pytest.mark.netns(uplink=True)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_tears_everything_down(service, netns, root_bus, signum):
    nc = Netcfg(root_bus)
    fds, _ = await establish_two(nc)
    try:
        assert_established(netns, fds)
        assert journal_files(service)
        service.signal(signum)
        assert await service.wait(20) == 0
        assert_clean(netns)  # although our tun fds are still open
        assert journal_files(service) == []
        assert "tearing down 3 devices" in service.log_text()
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.netns(uplink=True)
@pytest.mark.parametrize("fd_held", [True, False], ids=["fd-held", "fd-closed"])
async def test_restart_after_sigkill_undoes_the_journal(service_factory, netns, root_bus, fd_held):
    """SIGKILL leaves everything in the kernel; a new instance with the same
    --state-dir removes it before it serves (the tun too, while a client
    still holds its fd; exclude and host routes via the uplink)."""
    first = await service_factory()
    nc = Netcfg(root_bus)
    fds, _ = await establish_two(nc)
    try:
        assert_established(netns, fds)
        first.signal(signal.SIGKILL)
        assert await first.wait(10) == -signal.SIGKILL
        if not fd_held:
            for fd in fds:
                os.close(fd)
            fds = []
            # the kernel removes the tuns and their routes, not the rest
            await wait_until(lambda: tun_links(netns) == [], what="the kernel removing the closed tuns")
        else:
            assert_established(netns, fds)
        assert any(r[2] == UPLINK_IF for r in route_set(netns))
        assert journal_files(first)

        second = await service_factory(extra_args=["--state-dir", str(first.state_dir)])
        await second.ping()  # answered only after recovery
        assert_clean(netns)
        assert journal_files(first) == []
        # Three ledgers (two devices, one protection), each with objects, no errors.
        recovered = re.findall(r"recovered (\S+) from an earlier run: (\d+) objects removed(.*)", second.log_text())
        assert len(recovered) == 3, recovered
        assert all(int(n) > 0 and not rest for _, n, rest in recovered), recovered
        assert log_problems(second, allow=("recovered",)) == []
        assert await Netcfg(root_bus).device_paths() == []
    finally:
        for fd in fds:
            os.close(fd)


IDLE = ["--idle-exit", "0.02"]  # minutes: 1.2 s


async def test_idle_exit_without_devices(service_factory):
    svc = await service_factory(extra_args=IDLE)
    svc.stopped_by_test = True  # it stops by itself: the fixture must not expect it alive
    assert await svc.wait(60) == 0
    assert "idle" in svc.log_text()


async def test_no_idle_exit_with_a_device(service_factory, root_bus, netns):
    svc = await service_factory(extra_args=IDLE)
    nc = Netcfg(root_bus)
    path = await nc.create("keepalive")
    # Several idle periods (1.2 s each, checked every 0.6 s) without activity.
    assert await svc.wait(5) is None, "exited although a device exists"
    svc.stopped_by_test = True
    await nc.destroy(path)
    assert await svc.wait(60) == 0
    assert_clean(netns)


@pytest.mark.netns(uplink=True)
async def test_no_idle_exit_while_a_socket_is_protected(service_factory, root_bus, netns):
    """The real client protects its transport socket before it creates a device
    (spec 1.7), and a login may take minutes: its host route must stay."""
    svc = await service_factory(extra_args=IDLE)
    nc = Netcfg(root_bus)
    await protect(nc, "/")
    assert await svc.wait(5) is None, "exited although a protection is in place"
    svc.stopped_by_test = True
    await nc.call(NETCFG_MANAGER_PATH, "Cleanup", "", [])
    assert await svc.wait(60) == 0
    assert_clean(netns)


def capabilities(pid: int) -> dict[str, int]:
    """The capability sets of the process, checked to be the same in every
    thread (they belong to each thread; asyncio's workers run tun and DNS work)."""
    per_thread = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            per_thread.append({k: int(v, 16) for k, v in (line.split(":") for line in f) if k.startswith("Cap")})
    assert all(t == per_thread[0] for t in per_thread), per_thread
    return per_thread[0]


KEPT_CAPS = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 12) | (1 << 13)  # chown, dac_override, fowner, net_admin, net_raw


@pytest.mark.netns(uplink=True)
async def test_serves_with_only_the_capabilities_it_needs(service, root_bus, netns):
    """Started as root with every capability, the service keeps five
    (netcfg/privileges.py), for good: not in the bounding set either, so a
    program it runs (resolvconf) cannot get the others back; and it still
    does its job with them."""
    nc = Netcfg(root_bus)
    fds, paths = await establish_two(nc)  # tun fds are opened in worker threads
    try:
        assert_established(netns, fds)
        assert len(os.listdir(f"/proc/{service.pid}/task")) > 1
        caps = capabilities(service.pid)
        assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == KEPT_CAPS
        assert caps["CapInh"] == caps["CapAmb"] == 0
    finally:
        for p in paths:
            await nc.destroy(p)
        for fd in fds:
            os.close(fd)
    assert_clean(netns)


async def test_keep_all_capabilities(service_factory):
    svc = await service_factory(extra_args=["--keep-all-capabilities"])
    caps = capabilities(svc.pid)
    assert caps["CapEff"] & ~KEPT_CAPS and caps["CapBnd"] & ~KEPT_CAPS


async def test_open_file_limit_is_raised_to_the_hard_limit(service):
    """DCO devices hold fds (socket pair, netlink socket, transport sockets):
    the service takes the hard open-file limit, not the usual soft 1,024."""
    with open(f"/proc/{service.pid}/limits") as f:
        line = next(ln for ln in f if ln.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == (str(1 << 20) if hard == "unlimited" else hard), line
