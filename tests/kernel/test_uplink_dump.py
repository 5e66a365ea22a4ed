"""kernel/uplink.py's reading of the main table (raw, kernel-filtered dump, kernel/rtnl.py) against the kernel.

The namespace holds a veth "uplink" with default routes, and next to them
everything the reading must leave out: our own routes (protocol 111), routes
on the tun (one of "our tunnels"), another table, a blackhole route.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket

import pytest

from netcfg.errors import KernelRefused
from netcfg.kernel import rtnl
from netcfg.kernel.uplink import Hop, UplinkView, main_table

pytestmark = pytest.mark.asyncio


@pytest.fixture
def uplink(kernel_netns, kernel_tun):
    """veth up0 (192.0.2.2/24, 2001:db8:1::2/64) with default routes, and the routes to leave out.

    Returns up0's ifindex."""
    ip = kernel_netns.ip
    ip("link", "add", "up0", "type", "veth", "peer", "name", "up1")
    ip("addr", "add", "192.0.2.2/24", "dev", "up0")
    ip("-6", "addr", "add", "2001:db8:1::2/64", "dev", "up0", "nodad")
    ip("link", "set", "up0", "up")
    ip("link", "set", "up1", "up")
    ip("route", "add", "default", "via", "192.0.2.1", "metric", "100")
    ip("-6", "route", "add", "default", "via", "2001:db8:1::1")
    ip("route", "add", "198.18.0.0/15", "nexthop", "via", "192.0.2.1", "nexthop", "via", "192.0.2.3")
    # Left out: ours, on the tun, another table, not unicast.
    ip("route", "add", "198.51.100.0/24", "via", "192.0.2.1", "proto", "111")
    ip("-6", "route", "add", "2001:db8:77::/48", "via", "2001:db8:1::1", "proto", "111")
    ip("route", "add", "10.9.0.0/16", "dev", kernel_tun.name)
    ip("route", "add", "default", "via", "192.0.2.1", "table", "100")
    ip("route", "add", "blackhole", "203.0.113.0/24")
    return json.loads(ip("-j", "link", "show", "up0"))[0]["ifindex"]


def hop(net: str, gateway: str | None, oif: int, metric: int = 0) -> Hop:
    return Hop(ipaddress.ip_network(net), gateway, oif, metric)


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "unfiltered"])
async def test_main_table_outside_the_tunnels(kernel_netns, kernel_tun, uplink, strict):
    """The same hops whether the kernel filters (strict check) or sends everything."""
    with kernel_netns.inside():
        sock = rtnl.dump_socket(strict=strict)
    try:
        hops = await main_table({kernel_tun.index}, sock)
        again = await main_table({kernel_tun.index}, sock)  # the socket is ready for the next reading
    finally:
        sock.close()
    up = uplink
    assert hops == again
    assert set(hops) >= {
        hop("0.0.0.0/0", "192.0.2.1", up, 100),
        hop("192.0.2.0/24", None, up),
        hop("198.18.0.0/15", "192.0.2.1", up),  # a multipath route: its first hop
        hop("::/0", "2001:db8:1::1", up, 1024),
        hop("2001:db8:1::/64", None, up, 256),
    }
    nets = {str(h.network) for h in hops}
    assert not nets & {"198.51.100.0/24", "2001:db8:77::/48", "10.9.0.0/16", "203.0.113.0/24"}, nets
    assert all(h.oif != kernel_tun.index for h in hops), hops  # nothing on the tun, its prefix routes neither
    assert [h for h in hops if str(h.network) == "0.0.0.0/0"] == [hop("0.0.0.0/0", "192.0.2.1", up, 100)]

    view = UplinkView(hops)
    assert view.default(False).gateway == "192.0.2.1"
    assert view.exact("192.0.2.0", 24) == hop("192.0.2.0/24", None, up)
    assert view.exact("198.51.100.0", 24) is None  # ours do not count


async def test_strict_dump_is_filtered_by_the_kernel(kernel_netns, kernel_tun, uplink):
    """With NETLINK_GET_STRICT_CHK the kernel itself sends only table main, unicast, the asked family."""
    with kernel_netns.inside():
        sock = rtnl.dump_socket(strict=True)
    try:
        seen = set()
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
            async for kind, data, start, end in rtnl.dump(sock, rtnl.route_dump_request(seq, family, 254)):
                n = rtnl.parse(kind, data, start, end)
                seen.add((rtnl.route_family(data, start), n.table, rtnl.route_type(data, start)))
    finally:
        sock.close()
    assert seen == {(socket.AF_INET, 254, rtnl.RTN_UNICAST), (socket.AF_INET6, 254, rtnl.RTN_UNICAST)}


async def test_a_refused_dump_raises_and_the_socket_stays_usable(kernel_netns, kernel_tun, uplink):
    with kernel_netns.inside():
        sock = rtnl.dump_socket(strict=True)
    try:
        with pytest.raises(rtnl.DumpRefused) as refused:
            async for _ in rtnl.dump(sock, rtnl.route_dump_request(1, socket.AF_INET, 4000)):  # no such table
                pass
        assert refused.value.errno == errno.ENOENT
        assert any(h.gateway == "192.0.2.1" for h in await main_table({kernel_tun.index}, sock))
    finally:
        sock.close()


async def test_main_table_errors_are_kernel_refusals(monkeypatch):
    async def refusing(sock, request):
        raise rtnl.DumpRefused(errno.EPERM, "Operation not permitted")
        yield  # an async generator

    monkeypatch.setattr(rtnl, "dump", refusing)
    with pytest.raises(KernelRefused, match="dump routes main table \\(IPv4\\): Operation not permitted"):
        await main_table(set())
