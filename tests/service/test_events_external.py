"""Changes made by others (`ip` as an admin would) to a netcfg-managed device.

Subscribers get the REMOVED/ADDED event with origin=external; the device's
teardown afterwards neither fails nor reports those objects again.
"""

from __future__ import annotations

import os

import pytest

from support.client import arun_client
from support.dbuscalls import Netcfg
from support.lifecycle import tun_name
from support.lifecycle import NETWORKS as LIFECYCLE_NETWORKS
from support.lifecycle import assert_ok, configure_steps, dev_step, mgr_step
from support.subscriber import Subscriber

DEVICE_ADDED, DEVICE_REMOVED, IPADDR_ADDED, IPADDR_REMOVED = 1, 2, 4, 8
ROUTE_ADDED, ROUTE_REMOVED, ROUTE_EXCLUDED = 16, 32, 64
ADDRESSES = [("10.8.0.2", 24, "10.8.0.1", False), ("fd00:8::2", 64, "fd00:8::1", True)]
NETWORKS = [("192.168.100.0", 24, -1, False, False), ("fd00:100::", 48, -1, True, False),
            ("198.51.100.0", 24, -1, False, True)]
EXT, OURS = {"origin": "external"}, {"origin": "netcfg"}
pytestmark = pytest.mark.netns(uplink=True)  # for the exclude route


def route(subnet: str, prefix: int, v6: bool = False, **extra) -> dict:
    return {"ip_version": "6" if v6 else "4", "subnet": subnet, "prefix": str(prefix), "prefix_size": str(prefix),
            **extra}


def address(ip: str, prefix: int, v6: bool = False, **extra) -> dict:
    return {"ip_address": ip, "prefix": str(prefix), "prefix_size": str(prefix), "ip_version": "6" if v6 else "4",
            **extra}


def link_gone_externally(tun: str) -> list[list]:
    """What subscribers hear when the tun of `setup`'s device vanishes under us."""
    return [
        [ROUTE_REMOVED, tun, route("192.168.100.0", 24, **EXT)],
        [ROUTE_REMOVED, tun, route("fd00:100::", 48, True, **EXT)],
        [IPADDR_REMOVED, tun, address("10.8.0.2", 24, **EXT)],
        [IPADDR_REMOVED, tun, address("fd00:8::2", 64, True, **EXT)],
        [DEVICE_REMOVED, tun, EXT],
    ]


async def setup(bus, root_bus, users, name: str):
    sub = await Subscriber.start(bus.address, users.openvpn.name, mask=2047)
    path = await Netcfg(root_bus).configured(name, ADDRESSES, NETWORKS)
    fd = await Netcfg(root_bus).establish(path)
    ifname = tun_name(fd)
    await sub.wait_changes(6)  # device, 2 addresses, 2 routes, 1 exclude
    return sub, path, fd, ifname


async def new_changes(sub: Subscriber, before: int, count: int) -> list[list]:
    return (await sub.wait_changes(before + count))[before:]


@pytest.mark.asyncio
async def test_route_and_address_deleted_by_admin(service, bus, users, root_bus, netns):
    sub, path, fd, tun = await setup(bus, root_bus, users, "extdel")
    netns.ip("route", "del", "192.168.100.0/24", "dev", tun)
    assert await new_changes(sub, 6, 1) == [[ROUTE_REMOVED, tun, route("192.168.100.0", 24, **EXT)]]
    netns.ip("addr", "del", "10.8.0.2/24", "dev", tun)
    assert await new_changes(sub, 7, 1) == [[IPADDR_REMOVED, tun, address("10.8.0.2", 24, **EXT)]]
    netns.ip("route", "del", "198.51.100.0/24")  # an exclude route, via the uplink
    assert await new_changes(sub, 8, 1) == [[ROUTE_REMOVED, tun, route("198.51.100.0", 24, **EXT)]]

    await Netcfg(root_bus).call(path, "Destroy")  # the rest only, once, ours
    assert await new_changes(sub, 9, 3) == [
        [ROUTE_REMOVED, tun, route("fd00:100::", 48, True, **OURS)],
        [IPADDR_REMOVED, tun, address("fd00:8::2", 64, True, **OURS)],
        [DEVICE_REMOVED, tun, OURS],
    ]
    os.close(fd)
    await sub.settle()
    assert len(sub.changes()) == 12
    await sub.close()
    assert "teardown incomplete" not in service.log_text()


@pytest.mark.asyncio
async def test_link_deleted_by_admin(service, bus, users, root_bus, netns):
    sub, path, fd, tun = await setup(bus, root_bus, users, "extlink")
    netns.ip("link", "del", tun)
    assert await new_changes(sub, 6, 5) == link_gone_externally(tun)
    await Netcfg(root_bus).call(path, "Destroy")  # only the exclude route was left, and it is not reported (spec 8)
    os.close(fd)
    await sub.settle()
    assert len(sub.changes()) == 11
    assert not netns.netcfg_routes()
    await sub.close()


@pytest.mark.asyncio
async def test_foreign_route_and_address_on_the_device(service, bus, users, root_bus, netns):
    sub, path, fd, tun = await setup(bus, root_bus, users, "extadd")
    netns.ip("route", "add", "203.0.113.0/24", "dev", tun)
    netns.ip("addr", "add", "10.9.0.5/32", "dev", tun)
    netns.ip("route", "del", "203.0.113.0/24", "dev", tun)
    assert await new_changes(sub, 6, 3) == [
        [ROUTE_ADDED, tun, route("203.0.113.0", 24, gateway="", **EXT)],
        [IPADDR_ADDED, tun, address("10.9.0.5", 32, **EXT)],
        [ROUTE_REMOVED, tun, route("203.0.113.0", 24, **EXT)],
    ]
    await Netcfg(root_bus).call(path, "Destroy")
    os.close(fd)
    await sub.settle()
    assert [c[2]["origin"] for c in sub.changes()[9:]] == ["netcfg"] * 5
    await sub.close()


@pytest.mark.asyncio
async def test_link_set_down_by_admin(service, bus, users, root_bus, netns):
    """IPv4 routes vanish without a notification of their own: found by a dump."""
    sub, path, fd, tun = await setup(bus, root_bus, users, "extdown")
    netns.ip("link", "set", tun, "down")
    gone_v4 = [ROUTE_REMOVED, tun, route("192.168.100.0", 24, **EXT)]
    await sub.wait_changes(7)
    await sub.settle()
    assert gone_v4 in sub.changes()[6:]
    await Netcfg(root_bus).call(path, "Destroy")
    os.close(fd)
    await sub.settle()
    assert all(c[2]["origin"] == "netcfg" for c in sub.changes() if c[0] == DEVICE_REMOVED)
    await sub.close()


@pytest.mark.asyncio
async def test_tun_closed_by_a_living_client_is_external(service, bus, users, root_bus, netns):
    """The creator (this test's connection) lives on but closes its tun fd:
    the kernel deletes the link, and that is not netcfg's doing."""
    sub, path, fd, tun = await setup(bus, root_bus, users, "extclose")
    os.close(fd)
    assert await new_changes(sub, 6, 5) == link_gone_externally(tun)
    await Netcfg(root_bus).call(path, "Destroy")
    await sub.settle()
    assert len(sub.changes()) == 11
    await sub.close()


@pytest.mark.asyncio
async def test_tun_gone_with_its_killed_client_is_ours(service, bus, users, root_bus, netns):
    """A client killed with its tun fd open: the kernel deletes the tun a
    moment before the bus reports the client gone.  The removal is netcfg's
    cleanup for the vanished client (origin netcfg), reported once, in
    teardown order (netcfg/process.py; before it, some runs said external)."""
    sub = await Subscriber.start(bus.address, users.openvpn.name, mask=2047)
    steps = [mgr_step("CreateVirtualInterface", "s", ["killed"])]
    steps += configure_steps({"ref": [0, 0]}) + [dev_step({"ref": [0, 0]}, "Establish")]
    client = await arun_client(service.bus_address, steps, user=users.openvpn.name, hold=True)
    try:
        assert_ok(client.results)
        added = len(await sub.wait_changes(1 + 2 + len(LIFECYCLE_NETWORKS)))
    finally:
        assert await client.kill() == -9
    removed = await new_changes(sub, added, len(LIFECYCLE_NETWORKS) + 2 + 1)
    assert [c[0] for c in removed] == [ROUTE_REMOVED] * len(LIFECYCLE_NETWORKS) + [IPADDR_REMOVED] * 2 + [DEVICE_REMOVED]
    assert all(c[2]["origin"] == "netcfg" for c in removed), removed
    await sub.settle()
    assert len(sub.changes()) == added + len(removed)
    await sub.close()
    assert "removed by someone else" not in service.log_text()
