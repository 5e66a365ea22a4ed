"""ProtectSocket with an fd that is not a socket: a named error, nothing changed."""

from __future__ import annotations

import os

import pytest

from support import NETCFG_MANAGER_PATH
from support.protection import CallFailed, Netcfg, fwmark_rules
from support.dbuscalls import NETCFG_ERROR

pytestmark = pytest.mark.asyncio
MARK = 0x42


@pytest.mark.netns(uplink=True)
@pytest.mark.service(extra_args=["--redirect-method", "bind-device", "--set-somark", str(MARK)])
async def test_not_a_socket_is_refused_before_any_change(service, netns, root_bus):
    nc = Netcfg(root_bus)
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        with pytest.raises(CallFailed) as err:
            await nc.call(NETCFG_MANAGER_PATH, "ProtectSocket", "sbo", ["198.51.100.1", False, "/"], fds=[fd])
    finally:
        os.close(fd)
    assert err.value.name == NETCFG_ERROR and "not a socket" in err.value.text
    assert fwmark_rules(netns) == [] and netns.netcfg_routes() == []  # the mark rule was not installed
