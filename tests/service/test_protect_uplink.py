"""Uplink changes while a tunnel is up (issue 5): what bypasses the tunnel follows.

The protected host route, the exclude routes (IPv4 and IPv6) and the
--set-somark table go via the uplink gateway.  When the default route moves
to another gateway, or a second uplink with a better default route appears
(and goes away again), they must move with it, and NetworkChange
subscribers hear ROUTE_EXCLUDED with the new gateway.
"""

from __future__ import annotations

import pytest
from dbus_fast import MessageType

from support import NETCFG_MANAGER_PATH
from support.netns import ROUTER_IF, ROUTER_V4, ROUTER_V6, UPLINK_IF
from support.protection import (
    EXCLUDE4, EXCLUDE6, MARK, OUTSIDE4, SERVER4, Netcfg, add_vpn_server, route_get, socket_in, wait_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.netns(uplink=True),
              pytest.mark.service(extra_args=["--set-somark", str(MARK)])]

ROUTE_EXCLUDED = 64
NEW_V4, NEW_V6 = "192.0.2.254", "2001:db8:ff::fe"  # a second router address on the same veth


def listen(bus) -> list[list]:
    """NetworkChange signals the connection receives: [type, device, details, path]."""
    got = []

    def handler(msg):
        if msg.message_type is MessageType.SIGNAL and msg.member == "NetworkChange":
            got.append([*msg.body, msg.path])

    bus.add_message_handler(handler)
    return got


def bypass_paths(netns) -> dict:
    """Where each bypassing lookup leaves now: (dev, gateway)."""
    looks = {"server": (SERVER4,), "exclude4": ("198.18.5.9",), "exclude6": ("2001:db8:55::9",),
             "mark4": (OUTSIDE4, "mark", str(MARK)), "mark6": ("2001:db8:7::7", "mark", str(MARK))}
    out = {}
    for name, args in looks.items():
        r = route_get(netns, *args)
        out[name] = (r["dev"], r.get("gateway"))
    return out


def via(dev: str, gw4: str, gw6: str) -> dict:
    return {"server": (dev, gw4), "exclude4": (dev, gw4), "exclude6": (dev, gw6), "mark4": (dev, gw4),
            "mark6": (dev, gw6)}


async def established(netns, root_bus) -> tuple[Netcfg, str, str, object]:
    add_vpn_server(netns)
    nc = Netcfg(root_bus)
    sock = socket_in(netns)
    path = await nc.device("follow")
    assert await nc.protect(SERVER4, False, path, sock) is True
    tun = await nc.bring_up(path)
    return nc, path, tun, sock


async def test_gateway_change_is_followed(service, netns, root_bus):
    signals = listen(root_bus)
    nc, path, tun, sock = await established(netns, root_bus)
    try:
        await nc.call(NETCFG_MANAGER_PATH, "NotificationSubscribe", "u", [ROUTE_EXCLUDED])
        assert bypass_paths(netns) == via(UPLINK_IF, ROUTER_V4, ROUTER_V6)
        assert route_get(netns, OUTSIDE4)["dev"] == tun

        netns.router.ip("addr", "add", f"{NEW_V4}/24", "dev", ROUTER_IF)
        netns.router.ip("addr", "add", f"{NEW_V6}/64", "dev", ROUTER_IF, "nodad")
        netns.ip("-4", "route", "replace", "default", "via", NEW_V4, "dev", UPLINK_IF)
        netns.ip("-6", "route", "replace", "default", "via", NEW_V6, "dev", UPLINK_IF)

        want = via(UPLINK_IF, NEW_V4, NEW_V6)
        await wait_until(lambda: bypass_paths(netns) == want, what=f"bypass via the new gateway: {want}")
        assert route_get(netns, OUTSIDE4)["dev"] == tun  # the redirect itself is untouched
        # Only the new routes are left: the old ones were replaced, not added to.
        gateways = {r.get("gateway") for r in netns.netcfg_routes() if r["dev"] == UPLINK_IF}
        assert gateways == {NEW_V4, NEW_V6}

        def excluded() -> set:
            return {(s[2]["subnet"], s[2]["gateway"], s[1], s[3]) for s in signals if s[0] == ROUTE_EXCLUDED}

        expected = {(SERVER4, NEW_V4, tun, path), (EXCLUDE4[0], NEW_V4, tun, path), (EXCLUDE6[0], NEW_V6, tun, path)}
        await wait_until(lambda: excluded() >= expected, what="ROUTE_EXCLUDED events")
        await nc.call(path, "Destroy")
    finally:
        nc.close()
        sock.close()


async def test_second_uplink_with_better_route(service, netns, root_bus):
    """A second uplink with a lower metric takes over; when it goes, the first is back."""
    router = netns.router
    netns.ip("link", "add", "uplink1", "type", "veth", "peer", "name", "down1", "netns", router.name)
    try:
        router.ip("addr", "add", "192.0.3.1/24", "dev", "down1")
        router.ip("addr", "add", "2001:db8:fe::1/64", "dev", "down1", "nodad")
        router.ip("link", "set", "down1", "up")
        netns.ip("addr", "add", "192.0.3.2/24", "dev", "uplink1")
        netns.ip("addr", "add", "2001:db8:fe::2/64", "dev", "uplink1", "nodad")
        netns.ip("link", "set", "uplink1", "up")
        # The first uplink's defaults get a metric, so a better one can exist.
        netns.ip("-4", "route", "add", "default", "via", ROUTER_V4, "dev", UPLINK_IF, "metric", "100")
        netns.ip("-4", "route", "del", "default", "via", ROUTER_V4, "dev", UPLINK_IF, "metric", "0")
        netns.ip("-6", "route", "add", "default", "via", ROUTER_V6, "dev", UPLINK_IF, "metric", "2000")
        netns.ip("-6", "route", "del", "default", "via", ROUTER_V6, "dev", UPLINK_IF, "metric", "1024")

        nc, path, tun, sock = await established(netns, root_bus)
        try:
            assert bypass_paths(netns) == via(UPLINK_IF, ROUTER_V4, ROUTER_V6)
            netns.ip("-4", "route", "add", "default", "via", "192.0.3.1", "dev", "uplink1", "metric", "50")
            netns.ip("-6", "route", "add", "default", "via", "2001:db8:fe::1", "dev", "uplink1", "metric", "50")
            want = via("uplink1", "192.0.3.1", "2001:db8:fe::1")
            await wait_until(lambda: bypass_paths(netns) == want, what=f"bypass via the second uplink: {want}")

            netns.ip("link", "del", "uplink1")  # the better uplink goes away
            want = via(UPLINK_IF, ROUTER_V4, ROUTER_V6)
            await wait_until(lambda: bypass_paths(netns) == want, what=f"bypass back on the first uplink: {want}")
            assert route_get(netns, OUTSIDE4)["dev"] == tun
            await nc.call(path, "Destroy")
        finally:
            nc.close()
            sock.close()
    finally:
        netns.ip("link", "del", "uplink1", check=False)
