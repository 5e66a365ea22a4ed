"""docs/leak-protection.md shows the exact `nft list table` of each state:
install each in a namespace with a real tun0 and compare."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import struct

import pytest

from netcfg.leak.rules import LeakRules
from support import REPO_ROOT
from support.nsenter import in_netns

pytestmark = pytest.mark.asyncio

DOC = REPO_ROOT / "docs" / "leak-protection.md"
MARK = 0x4F56
LAN = (ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("2001:db8:1::/64"))


def documented() -> dict[str, str]:
    blocks = re.findall(r"<!-- nft-state: (\S+) -->\n```\n(.*?)```", DOC.read_text(), re.S)
    return dict(blocks)


def open_tun0() -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"tun0", 0x0001 | 0x1000))  # TUNSETIFF, IFF_TUN|NO_PI
    return fd


async def test_the_documented_rules_are_what_the_kernel_holds(netns, leak_table):
    fd = in_netns(netns.name, open_tun0)
    try:
        tun = frozenset({netns.link("tun0")["ifindex"]})
        states = {
            "active": LeakRules(tunnels=tun, marks=frozenset({MARK})),
            "held": LeakRules(marks=frozenset({MARK})),
            "allow-lan": LeakRules(tunnels=tun, marks=frozenset({MARK}), allow_lan=True, lan=LAN),
        }
        docs = documented()
        assert set(docs) == set(states)
        for name, rules in states.items():
            await leak_table.apply(rules)
            assert leak_table.listing() == docs[name], f"docs/leak-protection.md, state {name}"
    finally:
        os.close(fd)
