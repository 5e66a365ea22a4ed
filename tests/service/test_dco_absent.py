"""DCO on a kernel without it (this machine: no ovpn-dco-v2, no ovpn).

A client asks DcoAvailable first and falls back to tun on false; one that
calls EnableDCO anyway gets a named error, and its device stays a usable
tun device.  The DCO path itself is tested in the VM (tests/dco).
"""

from __future__ import annotations

import os

import pytest

from support import NETCFG_MANAGER_PATH
from support.protection import CallFailed, Netcfg
from support.dbuscalls import NETCFG_ERROR

pytestmark = pytest.mark.asyncio


async def test_dco_available_is_false_without_dco_support(root_bus, service):
    """Answering true would make a DCO client fail instead of falling back to tun."""
    reply = await Netcfg(root_bus).call(NETCFG_MANAGER_PATH, "DcoAvailable")
    assert reply.body == [False]


async def test_enable_dco_fails_and_the_device_stays_a_tun(root_bus, service, netns):
    nc = Netcfg(root_bus)
    path = (await nc.call(NETCFG_MANAGER_PATH, "CreateVirtualInterface", "s", ["nodco"])).body[0]
    with pytest.raises(CallFailed) as err:
        await nc.call(path, "EnableDCO", "s", ["dco0"])
    assert err.value.name == NETCFG_ERROR and "no data channel offload" in err.value.text
    assert netns.link("dco0") is None
    assert (await nc.call(NETCFG_MANAGER_PATH, "FetchInterfaceList")).body[0] == [path]
    assert await nc.get(path, "device_name") == "nodco"
    await nc.set(path, "layer", "u", 3)
    reply = await nc.call(path, "Establish")
    [fd] = reply.unix_fds
    os.close(fd)
    assert (await nc.get(path, "device_name")).startswith("tun")
    await nc.call(path, "Destroy")
