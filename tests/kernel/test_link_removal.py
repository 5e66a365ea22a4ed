"""A journaled tun link is deleted only while its index still names that tun.

Index numbers are reused: after a reboot (the journal in --state-dir
survives one) or once a client's tun vanished with its fd, the recorded
ifindex may belong to somebody else's interface.
"""

from __future__ import annotations

import json

import pytest
import pytest_asyncio
from pyroute2 import AsyncIPRoute

from netcfg.kernel import link
from netcfg.kernel.link import TunLink
from netcfg.kernel.netlink import Netlink

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def nl(kernel_netns):
    nl = Netlink()
    nl.ipr = AsyncIPRoute(netns=kernel_netns.name)
    try:
        yield nl
    finally:
        nl.ipr.close()


def names(netns) -> set[str]:
    return {l["ifname"] for l in json.loads(netns.ip("-j", "link", "show"))}


async def test_recycled_index_is_not_deleted(nl, kernel_netns):
    kernel_netns.ip("link", "add", "br-lan", "type", "bridge")
    index = json.loads(kernel_netns.ip("-j", "link", "show", "br-lan"))[0]["ifindex"]
    await link.remove(nl, [TunLink(index, "tun0")])  # a journal's tun0 that had this index
    await link.remove(nl, [TunLink(index, "br-lan")])  # right name, but not a tun
    assert "br-lan" in names(kernel_netns)


async def test_our_tun_is_deleted_and_a_gone_one_is_done(nl, kernel_netns, kernel_tun):
    await link.remove(nl, [TunLink(kernel_tun.index, "not-" + kernel_tun.name)])
    assert kernel_tun.name in names(kernel_netns)
    await link.remove(nl, [TunLink(kernel_tun.index, kernel_tun.name)])
    assert kernel_tun.name not in names(kernel_netns)
    await link.remove(nl, [TunLink(kernel_tun.index, kernel_tun.name)])  # already gone: no error
