"""The whole service under asyncio's debug mode (issue 15, item 8).

Every task the service starts must be awaited when it is cancelled, and no
exception may be left unretrieved: asyncio reports both ("Task was
destroyed but it is pending!", "exception was never retrieved"), as it
does a coroutine that was never awaited.  The service runs with
PYTHONASYNCIODEBUG=1 through a tour of what starts tasks: calls from
several clients, a subscriber receiving events, ProtectSocket, exclude
routes that follow an uplink change, a route deleted behind its back, a
client killed, Destroy, Cleanup, and SIGTERM with devices left.  Its log
and output must have none of those reports.
"""

from __future__ import annotations

import os
import signal

import pytest

from support.client import arun_client
from support.lifecycle import (
    NETWORKS, REMOTE, Netcfg, assert_ok, configure_steps, dev_step, mgr_step, set_step, tun_links, wait_until,
)
from support.netns import ROUTER_IF, UPLINK_IF

pytestmark = [pytest.mark.asyncio, pytest.mark.netns(uplink=True)]

REPORTS = ("Task was destroyed but it is pending", "exception was never retrieved", "was never awaited",
           "Task exception was never retrieved")
EXCLUDE = ["203.0.113.0", 24, -1, False, True]


async def test_no_task_or_exception_is_left_behind(service_factory, netns, root_bus, users):
    svc = await service_factory(extra_args=["--set-somark", "0x4f56"],
                                env={**os.environ, "PYTHONASYNCIODEBUG": "1"})
    nc = Netcfg(root_bus)
    await nc.call("/net/openvpn/v3/netcfg", "NotificationSubscribe", "u", [0x7FF])

    # A client with an established device, killed.
    dev = {"ref": [0, 0]}
    steps = ([mgr_step("CreateVirtualInterface", "s", ["dbg_killed"])] + configure_steps(dev, networks=NETWORKS)
             + [mgr_step("ProtectSocket", "sbo", [REMOTE[0], False, dev], fd="udp4"), dev_step(dev, "Establish")])
    killed = await arun_client(svc.bus_address, steps, user=users.openvpn.name, hold=True)
    assert_ok(killed.results)

    # The test's own devices: one destroyed, one left for SIGTERM; with an exclude route.
    paths = []
    fds = []
    for name in ("dbg_destroyed", "dbg_left"):
        path = await nc.create(name)
        await nc.configure(path, networks=NETWORKS + [EXCLUDE], reroute_ipv4=True)
        fds.append(await nc.establish(path))
        paths.append(path)
    try:
        tun = await nc.get(paths[0], "device_name")
        netns.ip("route", "del", "192.168.100.0/24", "dev", tun)  # behind its back: reported as external
        netns.router.ip("addr", "add", "192.0.2.254/24", "dev", ROUTER_IF)
        netns.ip("-4", "route", "replace", "default", "via", "192.0.2.254", "dev", UPLINK_IF)  # the uplink moves
        await wait_until(lambda: any(r.get("gateway") == "192.0.2.254" for r in netns.netcfg_routes()),
                         what="the exclude route to follow the uplink")
        assert await killed.kill() == -9
        await wait_until(lambda: len(tun_links(netns)) == 2, what="the killed client's device to go")
        await nc.call(paths[0], "Destroy")
        cleaner = await arun_client(svc.bus_address, [mgr_step("CreateVirtualInterface", "s", ["dbg_cleaned"]),
                                                      set_step({"ref": [0, 0]}, "layer", "u", 3),
                                                      mgr_step("Cleanup")], user=users.openvpn.name)
        assert_ok(cleaner)
        await wait_until(lambda: "removed by someone else" in svc.log_text(), what="the external change")
        svc.signal(signal.SIGTERM)
        assert await svc.wait(30) == 0
    finally:
        for fd in fds:
            os.close(fd)
    text = svc.log_text() + svc.output_text()
    assert "asyncio debug mode" in text
    found = [line for line in text.splitlines() if any(r in line for r in REPORTS)]
    assert found == []
