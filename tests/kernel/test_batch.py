"""RouteBatcher against the real kernel, in a fresh network namespace per test."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import struct

import pytest
import pytest_asyncio

from netcfg.kernel import batch, nlmsg
from netcfg.kernel.batch import RouteBatcher, RouteFailure
from netcfg.kernel.route import RTPROT_NETCFG, Route

V4, V6 = socket.AF_INET, socket.AF_INET6
GW4, GW6 = "10.200.0.1", "fd00:200::1"  # on the tun's connected prefixes (conftest)


@pytest_asyncio.fixture
async def batcher(kernel_netns):
    batcher = RouteBatcher()
    with kernel_netns.inside():
        batcher.open()
    try:
        yield batcher
    finally:
        batcher.close()


def v4_routes(oif: int, count: int, start: int = 0) -> list[Route]:
    """/32s in 198.18.0.0/15; every third via a gateway, every other with a metric."""
    base = int(ipaddress.IPv4Address("198.18.0.0"))
    return [
        Route(V4, str(ipaddress.IPv4Address(base + i)), 32, oif,
              gateway=GW4 if i % 3 == 0 else None, metric=100 + i % 7 if i % 2 else None)
        for i in range(start, start + count)
    ]  # fmt: skip


def v6_routes(oif: int, count: int, start: int = 0) -> list[Route]:
    base = int(ipaddress.IPv6Address("2001:db8::"))
    return [
        Route(V6, str(ipaddress.IPv6Address(base + (i << 64))), 64, oif,
              gateway=GW6 if i % 3 == 0 else None, metric=200 + i % 5 if i % 2 else None)
        for i in range(start, start + count)
    ]  # fmt: skip


async def installed(netns, family: int) -> dict[str, dict]:
    """Our routes (proto 111) in the namespace's main table, by destination."""
    routes = await netns.ip_json("-6" if family == V6 else "-4", "route", "show", "proto", str(RTPROT_NETCFG))
    return {r["dst"] if "/" in r["dst"] else f"{r['dst']}/32": r for r in routes}


def assert_installed(kernel: dict[str, dict], routes: list[Route], tun_name: str) -> None:
    assert set(kernel) == {f"{r.dst}/{r.prefix}" for r in routes}
    for route in routes:
        entry = kernel[f"{route.dst}/{route.prefix}"]
        assert entry["dev"] == tun_name
        assert entry.get("gateway") == route.gateway
        default_metric = 1024 if route.family == V6 else None  # IPv4 shows no metric 0
        assert entry.get("metric") == (route.metric if route.metric is not None else default_metric)


@pytest.mark.asyncio
@pytest.mark.parametrize("family", [V4, V6], ids=["ipv4", "ipv6"])
async def test_add_then_delete_1000(batcher, kernel_netns, kernel_tun, family):
    routes = (v4_routes if family == V4 else v6_routes)(kernel_tun.index, 1000)

    assert await batcher.add(routes) == []
    assert_installed(await installed(kernel_netns, family), routes, kernel_tun.name)

    assert await batcher.delete(routes) == []
    assert await installed(kernel_netns, family) == {}


@pytest.mark.asyncio
async def test_failures_are_reported_per_route_and_the_rest_succeed(batcher, kernel_netns, kernel_tun):
    oif = kernel_tun.index
    existing = Route(V4, "198.18.0.1", 32, oif)
    assert await batcher.add([existing]) == []
    good = [Route(V4, "198.18.0.2", 32, oif), Route(V6, "2001:db8::", 64, oif), Route(V4, "198.18.0.9", 32, oif)]
    no_device = Route(V4, "198.18.0.3", 32, 999_999)
    unreachable = Route(V4, "198.18.0.4", 32, oif, gateway="192.0.2.1")
    unreachable6 = Route(V6, "2001:db8:1::", 64, oif, gateway="2001:db8:ff::1")
    batch = [good[0], existing, no_device, good[1], unreachable, unreachable6, good[2]]

    failures = await batcher.add(batch)

    assert [(f.route, f.errno) for f in failures] == [
        (existing, errno.EEXIST),
        (no_device, errno.ENODEV),
        (unreachable, errno.ENETUNREACH),
        (unreachable6, errno.EHOSTUNREACH),  # IPv6 says "host"
    ]
    assert "gateway" in failures[2].extack  # the kernel's NETLINK_EXT_ACK text
    assert set(await installed(kernel_netns, V4)) == {"198.18.0.1/32", "198.18.0.2/32", "198.18.0.9/32"}
    assert set(await installed(kernel_netns, V6)) == {"2001:db8::/64"}


@pytest.mark.asyncio
async def test_failures_keep_their_index_across_datagrams(kernel_netns, kernel_tun):
    """Small datagrams and window: acks of many sends are matched to the right routes."""
    routes = v4_routes(kernel_tun.index, 3000)
    batcher = RouteBatcher(per_datagram=16, max_in_flight=64)
    with kernel_netns.inside():
        batcher.open()
    try:
        assert await batcher.add(routes[::97]) == []
        failures = await batcher.add(routes)
    finally:
        batcher.close()
    assert [f.route for f in failures] == routes[::97]
    assert {f.errno for f in failures} == {errno.EEXIST}
    assert len(await installed(kernel_netns, V4)) == 3000


@pytest.mark.asyncio
async def test_deleting_missing_routes_is_not_a_failure(batcher, kernel_netns, kernel_tun):
    routes = v4_routes(kernel_tun.index, 50) + v6_routes(kernel_tun.index, 50)
    assert await batcher.delete(routes) == []


@pytest.mark.asyncio
async def test_delete_leaves_other_protocols_alone(batcher, kernel_netns, kernel_tun):
    """Deletes carry our protocol, so a foreign route with the same key survives."""
    await kernel_netns.ip_async("route", "add", "198.18.0.1/32", "dev", kernel_tun.name, "proto", "static")
    assert await batcher.delete([Route(V4, "198.18.0.1", 32, kernel_tun.index)]) == []
    assert [r["dst"] for r in await kernel_netns.ip_json("route", "show", "proto", "static")] == ["198.18.0.1"]


@pytest.mark.asyncio
async def test_concurrent_calls(batcher, kernel_netns, kernel_tun):
    first, second = v4_routes(kernel_tun.index, 2500), v4_routes(kernel_tun.index, 2500, start=2500)
    clash = v4_routes(kernel_tun.index, 10, start=100)  # already in `first`

    results = await asyncio.gather(batcher.add(first), batcher.add(second), batcher.add(v6_routes(kernel_tun.index, 500)))
    assert results == [[], [], []]
    assert_installed(await installed(kernel_netns, V4), first + second, kernel_tun.name)

    failures, deleted = await asyncio.gather(batcher.add(clash), batcher.delete(second))
    assert [f.route for f in failures] == clash and deleted == []
    assert set(await installed(kernel_netns, V4)) == {f"{r.dst}/32" for r in first}


@pytest.mark.asyncio
async def test_acks_of_a_cancelled_call_are_not_credited_to_the_next(batcher, kernel_netns, kernel_tun):
    first, second = v4_routes(kernel_tun.index, 5000), v6_routes(kernel_tun.index, 300)
    task = asyncio.create_task(batcher.add(first))
    for _ in range(3):  # let it send a few datagrams
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await batcher.add(second) == []
    kernel = await installed(kernel_netns, V4)
    applied = {r for r in first if f"{r.dst}/32" in kernel}
    assert 0 < len(applied) < len(first)
    assert {f.route for f in await batcher.add(first)} == applied


@pytest.mark.asyncio
async def test_empty_calls_and_failure_text():
    async with RouteBatcher() as batcher:  # host namespace: sends nothing
        assert await batcher.add([]) == [] and await batcher.delete([]) == []
    failure = RouteFailure(Route(V4, "10.0.0.0", 8, 3), errno.EEXIST, "")
    assert str(failure) == "route 10.0.0.0/8 dev #3: EEXIST (17)"


@pytest.mark.asyncio
async def test_lost_acks_are_reported_not_guessed(kernel_netns, kernel_tun, monkeypatch):
    """A receive buffer too small for the acks: the kernel drops some, and
    those routes come back as ENOBUFS ("outcome unknown"), never as success."""
    monkeypatch.setattr(batch, "SOCKET_BUFFER", 4096)  # the kernel's minimum is ~2 KiB
    monkeypatch.setattr(batch, "ACK_COST", 1)  # so the window does not protect us
    routes = v4_routes(kernel_tun.index, 2000)
    batcher = RouteBatcher()
    with kernel_netns.inside():
        batcher.open()
    try:
        failures = await batcher.add(routes)
    finally:
        batcher.close()
    lost = {f.route for f in failures}
    assert 0 < len(lost) < len(routes) and {f.errno for f in failures} == {errno.ENOBUFS}
    kernel = await installed(kernel_netns, V4)
    assert all(f"{r.dst}/32" in kernel for r in routes if r not in lost)


def test_extack_of_an_uncapped_ack():
    """Without NETLINK_CAP_ACK the ack echoes the whole request before the TLVs."""
    request = Route(V4, "10.0.0.0", 8, 3).encode("add", 42)
    text = b"Nexthop has invalid gateway\0"
    tlv = struct.pack("=HH", 4 + len(text), nlmsg.NLMSGERR_ATTR_MSG) + text
    body = struct.pack("=i", -errno.ENETUNREACH) + request + tlv
    ack = struct.pack("=IHHII", 16 + len(body), nlmsg.NLMSG_ERROR, nlmsg.NLM_F_ACK_TLVS, 42, 0) + body
    assert list(batch._parse_acks(bytearray(ack), len(ack))) == [
        (42, errno.ENETUNREACH, "Nexthop has invalid gateway")
    ]
