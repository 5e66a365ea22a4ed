"""Nothing a protected session made outlives it (issue 5).

A client runner (user openvpn, another process) creates a device with
redirect-gateway and IPv4 + IPv6 excludes, protects its transport socket
with host-route and --set-somark, and establishes.  Then it is SIGKILLed, or
the service is stopped, or the service crashes and starts again: every
time, the tun, the protocol-111 routes (main and mark table) and the fwmark
rules must be gone.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest

from support.client import arun_client
from support.dbuscalls import dev_step, mgr_step
from support.protection import MARK, SERVER4, SERVER6, add_vpn_server, client_steps, nothing_left, ours, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.netns(uplink=True)]
SOMARK = ["--set-somark", str(MARK)]


async def held_client(service, netns, users, name: str):
    add_vpn_server(netns)
    client = await arun_client(service.bus_address, client_steps(name), user=users.openvpn.name, hold=True)
    bad = [r for r in client.results if not r["ok"]]
    assert not bad, bad
    assert client.results[-2]["body"] == [True]  # ProtectSocket
    made = ours(netns)
    assert len(made["tuns"]) == 1 and len(made["rules"]) == 2, made
    dsts = {r[2] for r in made["routes"]}
    assert {SERVER4, "198.18.5.0/24", "2001:db8:55::/48", "default"} <= dsts, made
    return client


@pytest.mark.service(extra_args=SOMARK)
async def test_sigkill_of_the_client(service, netns, users):
    client = await held_client(service, netns, users, "killed")
    await client.kill()
    await wait_until(lambda: nothing_left(netns), what="cleanup after the client's SIGKILL")


@pytest.mark.service(extra_args=SOMARK)
async def test_clean_exit_of_the_client(service, netns, users):
    client = await held_client(service, netns, users, "leaves")
    await client.release()  # closes its bus connection: it leaves the bus
    await wait_until(lambda: nothing_left(netns), what="cleanup after the client left the bus")


async def test_service_shutdown(service_factory, netns, users):
    service = await service_factory(extra_args=SOMARK)
    client = await held_client(service, netns, users, "shutdown")
    try:
        assert await service.stop() == 0
        assert ours(netns) == {"tuns": [], "routes": [], "rules": []}
    finally:
        await client.kill()


async def test_service_crash_then_restart(service_factory, netns, users):
    """The journal lists the rules and the mark table too: the next start undoes them.
    And with the journal lost, the sweep finds them by their protocol."""
    state = tempfile.mkdtemp(prefix="netcfg-state-")
    try:
        for journal_kept in (True, False):
            service = await service_factory(extra_args=SOMARK + ["--state-dir", state])
            client = await held_client(service, netns, users, f"crash{int(journal_kept)}")
            service.kill()
            assert await service.wait(10) is not None
            left = ours(netns)
            assert left["rules"] and left["routes"], left  # a crash leaves everything behind ...
            if not journal_kept:
                shutil.rmtree(state)
            restarted = await service_factory(extra_args=SOMARK + ["--state-dir", state])
            await restarted.ping()  # calls are served once recovery is done
            after = ours(netns)
            assert after["routes"] == [] and after["rules"] == [], after  # ... until the next start
            await client.kill()
            await wait_until(lambda: nothing_left(netns), what="the tun closes with its fd")
            assert await restarted.stop() == 0
    finally:
        shutil.rmtree(state, ignore_errors=True)


async def test_a_callers_last_device_ends_its_own_protection_only(service, netns, users):
    """One identity everywhere: the caller's unique bus name.  One process,
    two connections: the first creates a device and protects its socket,
    the second protects its own.  Destroying the first's last device ends
    the first's protection, not the second's (they share the PID, which
    used to be enough to end both), and the second's ends when it leaves."""
    add_vpn_server(netns)
    dev = {"ref": [0, 0]}
    steps = [mgr_step("CreateVirtualInterface", "s", ["mine"]),
             mgr_step("ProtectSocket", "sbo", [SERVER4, False, dev], fd="udp4"),
             mgr_step("ProtectSocket", "sbo", [SERVER6, True, "/"], fd="udp6", connection=1),
             dev_step(dev, "Destroy")]
    client = await arun_client(service.bus_address, steps, user=users.openvpn.name, hold=True)
    try:
        assert [r["ok"] for r in client.results] == [True] * 4, client.results
        dsts = {r[2] for r in ours(netns)["routes"]}
        assert SERVER6 in dsts and SERVER4 not in dsts, dsts
    finally:
        await client.kill()
    await wait_until(lambda: nothing_left(netns), what="the second connection's protection to end with it")
