"""Two devices carry the same destinations (issue 15, item 4).

Two VPN profiles of one company push the same networks, the same exclude
routes and redirect-gateway, and both clients protect their socket to the
same server.  Both Establish; the device that was established first keeps
the traffic (its routes were there first: the other device's go in behind
them, at the next metric, docs/architecture.md "Two devices, one
destination"); when it goes, the other's routes take over at once; each
device removes only its own.  IPv4 and IPv6, torn down in both orders,
the kernel checked after each step.
"""

from __future__ import annotations

import pytest
from dbus_fast.aio import MessageBus

from support.lifecycle import log_problems
from support.netns import ROUTER_V4, ROUTER_V6, UPLINK_IF
from support.protection import SERVER4, Netcfg, add_vpn_server, route_get, socket_in

pytestmark = [pytest.mark.asyncio, pytest.mark.netns(uplink=True)]

SHARED = [["10.100.0.0", 24, -1, False, False], ["172.16.0.0", 12, 50, False, False],
          ["fd00:100::", 48, -1, True, False],
          ["198.18.5.0", 24, -1, False, True], ["2001:db8:55::", 48, -1, True, True]]
OWN_B = [["10.200.0.0", 24, -1, False, False]]
TUNNEL = {"A": (("10.8.0.2", 24, "10.8.0.1"), ("fd00:8::2", 64, "fd00:8::1")),
          "B": (("10.9.0.2", 24, "10.9.0.1"), ("fd00:9::2", 64, "fd00:9::1"))}
V6_DEFAULT = 1024


async def bring_up(nc: Netcfg, name: str, networks: list) -> tuple[str, str]:
    path = (await nc.call("/net/openvpn/v3/netcfg", "CreateVirtualInterface", "s", [name])).body[0]
    await nc.set(path, "layer", "u", 3)
    for ipv6, (addr, prefix, gw) in zip((False, True), TUNNEL[name]):
        await nc.call(path, "AddIPAddress", "susb", [addr, prefix, gw, ipv6])
    await nc.set(path, "reroute_ipv4", "b", True)
    await nc.set(path, "reroute_ipv6", "b", True)
    await nc.call(path, "AddNetworks", "a(suibb)", [networks])
    return path, await nc.bring_up(path)


def routes_to(netns, dst: str) -> list[tuple[str, int]]:
    """Our routes to `dst`: (device, metric), best first."""
    found = [(r["dev"], r.get("metric", 0)) for r in netns.netcfg_routes() if r["dst"] == dst]
    return sorted(found, key=lambda d: d[1])


def expect(netns, devices: dict[str, str | None]) -> None:
    """The kernel's view when the devices named (A, B; value None: destroyed) are up, A first."""
    up = [(n, dev) for n, dev in devices.items() if dev is not None]
    first = up[0][1] if up else None

    def along(base: int) -> list:  # the survivors keep the metric they went in with
        return [(dev, base + (0 if n == "A" else 1)) for n, dev in up]

    for dst, base in (("10.100.0.0/24", 0), ("172.16.0.0/12", 50), ("0.0.0.0/1", 0), ("128.0.0.0/1", 0),
                      ("fd00:100::/48", V6_DEFAULT), ("::/1", V6_DEFAULT), ("8000::/1", V6_DEFAULT)):
        assert routes_to(netns, dst) == along(base), dst
    for dst, base in (("198.18.5.0/24", 0), ("2001:db8:55::/48", V6_DEFAULT)):
        assert routes_to(netns, dst) == [(UPLINK_IF, m) for _, m in along(base)], dst
    assert routes_to(netns, SERVER4) == [(UPLINK_IF, 1 + (n == "B")) for n, _ in up]
    assert routes_to(netns, "10.200.0.0/24") == ([(devices["B"], 0)] if devices["B"] else [])
    # What the traffic does: the first device's routes win while it is up.
    for dst in ("10.100.0.5", "172.20.0.1", "203.0.113.9", "fd00:100::5", "2001:db8:9::9"):
        assert route_get(netns, dst)["dev"] == (first or UPLINK_IF), dst
    assert route_get(netns, "198.18.5.9") == {**route_get(netns, "198.18.5.9"), "dev": UPLINK_IF, "gateway": ROUTER_V4}
    assert route_get(netns, "2001:db8:55::9")["gateway"] == ROUTER_V6


@pytest.mark.parametrize("first_down", ["A", "B"])
async def test_two_devices_with_the_same_destinations(service, netns, root_bus, bus_address, first_down):
    add_vpn_server(netns)
    other = await MessageBus(bus_address=bus_address, negotiate_unix_fd=True).connect()
    callers = {"A": Netcfg(root_bus), "B": Netcfg(other)}
    sockets = [socket_in(netns), socket_in(netns)]
    try:
        path_a, tun_a = await bring_up(callers["A"], "A", SHARED)
        assert await callers["A"].protect(SERVER4, False, path_a, sockets[0])
        path_b, tun_b = await bring_up(callers["B"], "B", SHARED + OWN_B)
        assert await callers["B"].protect(SERVER4, False, path_b, sockets[1])
        devices = {"A": tun_a, "B": tun_b}
        expect(netns, devices)

        last_down = "B" if first_down == "A" else "A"
        for name, path in ((first_down, {"A": path_a, "B": path_b}[first_down]),
                           (last_down, {"A": path_a, "B": path_b}[last_down])):
            await callers[name].call(path, "Destroy")
            devices[name] = None
            expect(netns, devices)
        assert netns.netcfg_routes() == []
        assert log_problems(service) == []
    finally:
        for s in sockets:
            s.close()
        for nc in callers.values():
            nc.close()
        other.disconnect()
