"""The leak-protection rules against real traffic (no service: the module is driven directly).

Each test builds the small internet of support/leaklab.py, installs a rule
set with netcfg.kernel.nft + netcfg.leak.rules in the client namespace, and
sends UDP and TCP probes over IPv4 and IPv6; the router's and the far end's
witnesses say where each one arrived ("router": through the uplink,
"far": through the tunnel, None: nowhere).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct

import pytest

from netcfg.leak.rules import LeakRules
from support.leaklab import (
    LAN4, LAN6, LAN_SERVICE_PORT, MARK, OUTSIDE4, OUTSIDE6, SERVER4, SERVER6, VPN_PORT, Probe, both,
)
from support.nsenter import in_netns

pytestmark = pytest.mark.asyncio

OUTSIDE = both(OUTSIDE4, OUTSIDE6, LAN_SERVICE_PORT)
SERVER = both(SERVER4, SERVER6, VPN_PORT)
PROTECTED = both(SERVER4, SERVER6, VPN_PORT, mark=MARK)
RESOLVER = both(LAN4, LAN6, 53) + both(LAN4, LAN6, 853, protos=("tcp",))
LAN_SERVICE = both(LAN4, LAN6, LAN_SERVICE_PORT)
DHCP = [Probe("udp", LAN4, 67, sport=68), Probe("udp", LAN6, 547, sport=546)]
V4 = lambda probes: [p for p in probes if ":" not in p.dst]  # noqa: E731
V6 = lambda probes: [p for p in probes if ":" in p.dst]  # noqa: E731


def expect(**groups) -> dict[Probe, str | None]:
    """expect(router=[...], far=[...], nowhere=[...]) -> {probe: where}."""
    out = {}
    for where, probes in groups.items():
        for p in probes:
            out[p] = None if where == "nowhere" else where
    return out


def table(result: dict) -> str:
    return "\n".join(f"  {str(p):55} -> {where}" for p, where in result.items())


async def assert_paths(lab, expected: dict) -> None:
    result = await lab.check(expected)
    wrong = {p: w for p, w in result.items() if w != expected[p]}
    assert not wrong, (f"probes that went the wrong way:\n{table({p: f'{w} (want {expected[p]})' for p, w in wrong.items()})}"
                       f"\nall:\n{table(result)}")


def policy(lab, **kw) -> LeakRules:
    kw.setdefault("tunnels", frozenset({lab.tunnel_index}))
    kw.setdefault("marks", frozenset({MARK}))
    kw.setdefault("uplinks", frozenset({"uplink0"}))
    return LeakRules(**kw)


async def test_without_protection_everything_takes_the_uplink(lab):
    await assert_paths(lab, expect(router=OUTSIDE + SERVER + PROTECTED + RESOLVER + LAN_SERVICE + DHCP))


async def test_established_tunnel_only_tunnel_and_protected_socket_get_out(lab, leak_table):
    lab.redirect()
    await leak_table.apply(policy(lab))
    await assert_paths(lab, expect(far=OUTSIDE, router=PROTECTED + DHCP, nowhere=SERVER + RESOLVER + LAN_SERVICE))
    dropped = await leak_table.counters()
    assert dropped["leak_output_ipv4"].packets > 0 and dropped["leak_output_ipv6"].packets > 0


async def test_no_tunnel_blocks_everything_but_the_protected_socket(lab, leak_table):
    await leak_table.apply(policy(lab, tunnels=frozenset()))
    await assert_paths(lab, expect(router=PROTECTED + DHCP, nowhere=OUTSIDE + SERVER + RESOLVER + LAN_SERVICE))


async def test_ipv4_only_tunnel_blocks_ipv6(lab, leak_table):
    lab.redirect(ipv6=False)
    await leak_table.apply(policy(lab))
    await assert_paths(lab, expect(far=V4(OUTSIDE), router=PROTECTED + DHCP,
                                   nowhere=V6(OUTSIDE) + SERVER + RESOLVER + LAN_SERVICE))
    assert (await leak_table.counters())["leak_output_ipv6"].packets > 0


async def test_allow_lan_lets_the_lan_in_but_not_its_resolver(lab, leak_table):
    lab.redirect()
    lan = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8:ff::/64"))
    await leak_table.apply(policy(lab, allow_lan=True, lan=lan))
    await assert_paths(lab, expect(far=OUTSIDE, router=PROTECTED + DHCP + LAN_SERVICE, nowhere=SERVER + RESOLVER))
    assert (await leak_table.counters())["leak_lan_dns"].packets > 0


async def test_marks_are_the_only_way_to_the_server(lab, leak_table):
    """Another mark than the allowed one does not get out either."""
    await leak_table.apply(policy(lab, tunnels=frozenset()))
    await assert_paths(lab, expect(router=PROTECTED, nowhere=both(SERVER4, SERVER6, VPN_PORT, mark=MARK + 1)))


async def test_uplink_upkeep_only_on_the_named_uplinks(lab, leak_table):
    """DHCP passes on the uplinks the policy names only; neighbour discovery
    on every interface (the protected socket's IPv6 needs it: the kernel's
    neighbour solicitations carry no socket mark)."""
    await leak_table.apply(policy(lab, tunnels=frozenset(), uplinks=frozenset({"eth9"})))
    await assert_paths(lab, expect(router=PROTECTED, nowhere=DHCP))


@pytest.mark.leaklab(container=True)
async def test_forwarded_traffic_is_held_to_the_same_rule(lab, leak_table):
    ctr_out = both(OUTSIDE4, OUTSIDE6, LAN_SERVICE_PORT, src="container")
    ctr_server = both(SERVER4, SERVER6, VPN_PORT, src="container")
    ctr_dns = both(LAN4, LAN6, 53, src="container")
    await assert_paths(lab, expect(router=ctr_out + ctr_server + ctr_dns))  # without protection
    lab.redirect()
    await leak_table.apply(policy(lab))
    await assert_paths(lab, expect(far=ctr_out, nowhere=ctr_server + ctr_dns))
    lab.unredirect()
    await assert_paths(lab, expect(nowhere=ctr_out + ctr_server + ctr_dns))
    dropped = await leak_table.counters()
    assert dropped["leak_forward_ipv4"].packets > 0 and dropped["leak_forward_ipv6"].packets > 0


async def test_a_real_tun_is_matched_by_its_index(lab, leak_table):
    """A tun device held open by the test (as a VPN client holds netcfg's):
    what the rules let into it, the test reads from its fd."""
    fd, name = in_netns(lab.client.name, open_tun)
    try:
        lab.client.ip("link", "set", name, "up")
        lab.client.ip("route", "add", f"{OUTSIDE4}/32", "dev", name)
        index = lab.client.link(name)["ifindex"]
        sock = in_netns(lab.client.name, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            await leak_table.apply(policy(lab, tunnels=frozenset({lab.tunnel_index})))  # not this one
            with pytest.raises(PermissionError):
                sock.sendto(b"blocked", (OUTSIDE4, 9))
            await leak_table.apply(policy(lab, tunnels=frozenset({index})))
            sock.sendto(b"through the tun", (OUTSIDE4, 9))
        packet = os.read(fd, 2048)  # queued already (sendto returned); IPv6 router solicitations may come first
        while packet[0] >> 4 != 4:
            packet = os.read(fd, 2048)
        assert packet.endswith(b"through the tun") and socket.inet_ntoa(packet[16:20]) == OUTSIDE4
    finally:
        os.close(fd)


def open_tun() -> tuple[int, str]:
    """A non-persistent tun without packet info (made inside the namespace)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    ifr = fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"ltun%d", 0x0001 | 0x1000))  # TUNSETIFF, IFF_TUN|NO_PI
    return fd, ifr[:16].rstrip(b"\0").decode()
