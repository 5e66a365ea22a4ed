"""Shutdown and the client's departure wait for calls in progress (issue 15, item 3).

A ProtectSocket (host route and, with --set-somark, the mark's rule and
table), an Establish (tun, addresses, routes, an exclude route on the
uplink) and an AddNetworks of 100,000 routes are each driven into a
SIGTERM of the service and into their client leaving the bus, in each
interleaving: while the call is in progress, and after it finished.
Whatever the order, nothing stays in the kernel or in the journal.

"In progress" is made certain, not timed: the service runs with a test
point armed (NETCFG_INJECT, netcfg/inject.py) that pauses the call at
its most delicate place (ProtectSocket between reading the uplink and
adding its route, Establish between configuring the link and adding the
routes, AddNetworks after parsing, before storing), reports the pause in
its log, and goes on at SIGUSR2.  The trigger comes while it is paused.
The calls are sent without waiting for their replies (NO_REPLY_EXPECTED),
so the client can be held, and killed, meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from support.client import arun_client
from support.lifecycle import ADDR4, NETWORKS, REMOTE, Netcfg, assert_ok, dev_step, mgr_step, set_step, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.netns(uplink=True)]

MARK = 0x4F56
EXCLUDE = ["203.0.113.0", 24, -1, False, True]
# Waits for the service's own progress: an AddNetworks of 100,000 routes took 13 s to parse on this
# 2-core machine with a DCO guest building beside the suite (load 5).  Conditions, never sleeps.
SLOW = 90
BIG = [[f"10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}", 32, -1, False, False] for i in range(100_000)]
DEV = {"ref": [0, 0]}


def device(name: str) -> list[dict]:
    return [mgr_step("CreateVirtualInterface", "s", [name]), set_step(DEV, "layer", "u", 3),
            dev_step(DEV, "AddIPAddress", "susb", ADDR4)]


def protect(**kw) -> dict:
    return mgr_step("ProtectSocket", "sbo", [REMOTE[0], False, "/"], fd="udp4", no_reply=True, **kw)


# call -> (its test point, the client's steps: the last one is the call, sent without waiting for the reply)
CALLS = {
    "ProtectSocket": ("protect.route", [protect()]),
    "Establish": ("establish.configured", device("est") + [
        dev_step(DEV, "AddNetworks", "a(suibb)", [NETWORKS[:2] + [EXCLUDE]]),
        dev_step(DEV, "Establish", no_reply=True)]),
    "AddNetworks": ("add_networks", device("big") + [
        dev_step(DEV, "AddNetworks", "a(suibb)", [BIG], no_reply=True)]),
}


def injected(point: str | None) -> dict:
    return {**os.environ, "NETCFG_INJECT": f"pause:{point}"} if point else dict(os.environ)


def journal_files(svc) -> list[str]:
    return sorted(p.name for p in svc.state_dir.glob("ledger-*"))


def kernel_clean(netns) -> bool:
    return (not [n for n in netns.link_names() if n.startswith("tun")] and netns.netcfg_routes() == []
            and not [r for r in netns.snapshot()["rules"] if "fwmark" in r])


async def started_call(service_factory, users, call: str, paused: bool):
    """The service, and a held client whose call is paused in the service or done."""
    point, steps = CALLS[call]
    svc = await service_factory(extra_args=["--set-somark", str(MARK)], env=injected(point if paused else None))
    if not paused:  # a call answered after it proves it was served: one sender's calls run in order
        steps = steps + [mgr_step("FetchInterfaceList")]
    client = await arun_client(svc.bus_address, steps, user=users.openvpn.name, hold=True)
    assert_ok(client.results)
    if paused:
        await wait_until(lambda: f"test point {point}: paused" in svc.log_text(), what=f"{call} to pause", timeout=SLOW)
    return svc, client


@pytest.mark.parametrize("paused", [True, False], ids=["during", "after"])
@pytest.mark.parametrize("call", sorted(CALLS))
async def test_sigterm_waits_for_the_call(service_factory, netns, users, call, paused):
    svc, client = await started_call(service_factory, users, call, paused)
    try:
        svc.signal(signal.SIGTERM)
        if paused:
            await wait_until(lambda: "waiting for 1 calls in progress" in svc.log_text(),
                             what="shutdown to wait for the call", timeout=SLOW)
            assert svc.alive()
            svc.signal(signal.SIGUSR2)  # the call goes on, then the teardown
        assert await svc.wait(SLOW) == 0, svc.diagnostics()
    finally:
        await client.kill()
    assert kernel_clean(netns), (netns.link_names(), netns.netcfg_routes())
    assert journal_files(svc) == []


@pytest.mark.parametrize("paused", [True, False], ids=["during", "after"])
@pytest.mark.parametrize("call", sorted(CALLS))
async def test_the_clients_departure_waits_for_its_call(service_factory, netns, root_bus, users, call, paused):
    svc, client = await started_call(service_factory, users, call, paused)
    assert await client.kill() == -9
    if paused:
        svc.signal(signal.SIGUSR2)
    nc = Netcfg(root_bus)
    await wait_until(lambda: kernel_clean(netns), what="the client's objects to be removed", timeout=SLOW)
    await wait_until(lambda: not journal_files(svc), what="the journal to be empty", timeout=SLOW)
    assert await nc.device_paths() == []
    assert svc.alive()


async def test_cleanup_from_another_connection_waits_for_a_protectsocket(service_factory, netns, users):
    """One process, two connections: a ProtectSocket on the first (paused
    between reading the uplink and adding its route), Cleanup() on the
    second, which releases the process's protections.  The release waits
    for the request in progress, then removes what it added: nothing is
    left, while the client is still there."""
    svc = await service_factory(extra_args=["--set-somark", str(MARK)], env=injected("protect.route"))
    barrier = svc.dir / "paused"  # the service's directory: readable by the client's user
    steps = [protect(), {"wait_for_file": str(barrier)}, mgr_step("Cleanup", connection=1, no_reply=True)]
    held = asyncio.ensure_future(arun_client(svc.bus_address, steps, user=users.openvpn.name, hold=True))
    client = None
    try:
        await wait_until(lambda: "test point protect.route: paused" in svc.log_text(), what="ProtectSocket to pause",
                         timeout=SLOW)
        barrier.touch()
        client = await held
        assert_ok(client.results)
        await wait_until(lambda: "waiting for its ProtectSocket in progress" in svc.log_text(),
                         what="Cleanup to wait for the ProtectSocket", timeout=SLOW)
        svc.signal(signal.SIGUSR2)
        await wait_until(lambda: kernel_clean(netns), what="the protection to be released", timeout=SLOW)
        await wait_until(lambda: not journal_files(svc), what="the journal to be empty", timeout=SLOW)
        assert client.alive()
    finally:
        if client is None:
            held.cancel()
        else:
            await client.kill()


async def test_a_new_protection_survives_the_release_of_the_old_one(service_factory, netns, root_bus, users):
    """The caller's last device is destroyed (by root), which releases the
    caller's protection; the caller's next ProtectSocket arrives while that
    release is in progress (paused).  It gets a protection of its own, with
    a journal key of its own: the old one's release removes its own route
    and journal file, never the new one's."""
    svc = await service_factory(env=injected("protection.release"))
    barrier = svc.dir / "released"
    dev = {"ref": [0, 0]}
    steps = [mgr_step("CreateVirtualInterface", "s", ["first"]),
             mgr_step("ProtectSocket", "sbo", [REMOTE[0], False, dev], fd="udp4"),
             {"wait_for_file": str(barrier)},
             mgr_step("ProtectSocket", "sbo", ["198.51.100.8", False, "/"], fd="udp4")]
    held = asyncio.ensure_future(arun_client(svc.bus_address, steps, user=users.openvpn.name, hold=True))
    client = None
    try:
        await wait_until(lambda: f"protected {REMOTE[0]} with" in svc.log_text(), what="the first protection",
                         timeout=SLOW)
        path = (await Netcfg(root_bus).device_paths())[0]
        destroy = asyncio.ensure_future(Netcfg(root_bus).destroy(path))
        await wait_until(lambda: "test point protection.release: paused" in svc.log_text(), what="the release",
                         timeout=SLOW)
        barrier.touch()
        client = await held
        assert_ok(client.results)
        svc.signal(signal.SIGUSR2)
        await destroy
        assert [r["dst"] for r in netns.netcfg_routes()] == ["198.51.100.8"]
        files = journal_files(svc)
        assert len(files) == 1, files
        assert "198.51.100.8" in (svc.state_dir / files[0]).read_text()
    finally:
        if client is None:
            held.cancel()
        else:
            await client.kill()
    await wait_until(lambda: kernel_clean(netns) and not journal_files(svc), what="the caller's departure",
                     timeout=SLOW)
