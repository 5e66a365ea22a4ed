"""kernel/watch.py + kernel/rtnl.py against the real kernel: notices and dumps."""

from __future__ import annotations

import asyncio

import pytest

from netcfg.kernel.watch import AddressNotice, KernelWatch, LinkNotice, RouteNotice, RuleNotice


@pytest.mark.asyncio
async def test_notices_and_dump(kernel_netns, kernel_tun):
    watch = KernelWatch()
    seen = []
    watch.subscribe(seen.append)
    with kernel_netns.inside():
        watch.open()
    await watch.start()
    try:
        i = kernel_tun.index
        ip = kernel_netns.ip_async
        await ip("route", "add", "192.0.2.0/24", "via", "10.200.0.1", "metric", "7", "proto", "111")
        await ip("-6", "route", "add", "2001:db8::/32", "dev", kernel_tun.name)
        await ip("route", "add", "198.51.100.0/24", "nexthop", "via", "10.200.0.1", "nexthop", "via", "10.200.0.3")
        await ip("addr", "add", "10.201.0.2/32", "dev", kernel_tun.name)
        await ip("rule", "add", "fwmark", "5", "table", "100", "priority", "1000")
        dumped = await watch.dump()
        await ip("route", "del", "192.0.2.0/24")
        await ip("link", "set", kernel_tun.name, "down")
        # The last change's notice is the barrier: the kernel sends them in
        # order, so once it is here every earlier one was handled.
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        while LinkNotice(True, i, kernel_tun.name, up=False) not in seen:
            assert loop.time() < end, f"the link-down notice did not come: {seen}"
            await asyncio.sleep(0.01)
    finally:
        await watch.stop()
    # Our own adds (protocol 111) are not delivered: no listener wants them;
    # their removal is (someone may have deleted one of our routes).
    assert not [n for n in seen if isinstance(n, RouteNotice) and n.added and n.proto == 111]
    assert RouteNotice(True, True, "2001:db8::", 32, i, None, 1024, 254, 3) in seen
    assert RouteNotice(True, False, "198.51.100.0", 24, i, "10.200.0.1", None, 254, 3) in seen  # first hop
    assert AddressNotice(True, i, "10.201.0.2", 32, False) in seen
    assert RuleNotice(True, False, 1000, 5, 100) in seen
    assert RouteNotice(False, False, "192.0.2.0", 24, i, "10.200.0.1", 7, 254, 111) in seen
    assert LinkNotice(True, i, kernel_tun.name, up=False) in seen
    assert LinkNotice(True, i, kernel_tun.name, up=True) in dumped
    assert RouteNotice(True, False, "192.0.2.0", 24, i, "10.200.0.1", 7, 254, 111) in dumped
    assert AddressNotice(True, i, "fd00:200::2", 64, True) in dumped
