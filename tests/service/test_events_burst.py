"""A burst: Establish of 10,000 routes with 10 subscriber processes.

Over 100,000 unicast signals.  All must arrive, in order, without the
service losing its bus connection; a subscriber that stops reading (SIGSTOP)
must not hold anyone back, and other clients' calls keep being answered
meanwhile.  No timing assertions: "answered" means within the client's
default timeout, and the suite's run time stays reasonable.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal

import pytest
from dbus_fast import Message, MessageType

from support import NETCFG_BUS_NAME, NETCFG_MANAGER_PATH
from support.dbuscalls import Netcfg
from support.lifecycle import tun_name
from support.subscriber import Subscriber

ROUTES = 10_000
SUBSCRIBERS = 10
DEVICE_ADDED, IPADDR_ADDED, ROUTE_ADDED, ROUTE_REMOVED = 1, 4, 16, 32


def networks() -> list[tuple]:
    base = int(ipaddress.IPv4Address("100.64.0.0"))
    return [(str(ipaddress.IPv4Address(base + i)), 32, -1, False, False) for i in range(ROUTES)]


async def keep_calling(bus, stop: asyncio.Event) -> int:
    """Another client's calls during the burst; returns how many were answered."""
    answered = 0
    while not stop.is_set():
        reply = await asyncio.wait_for(bus.call(Message(
            destination=NETCFG_BUS_NAME, path=NETCFG_MANAGER_PATH, interface="org.freedesktop.DBus.Properties",
            member="Get", signature="ss", body=[NETCFG_BUS_NAME, "version"])), 25)
        assert reply.message_type is MessageType.METHOD_RETURN, reply.body
        answered += 1
        await asyncio.sleep(0.01)
    return answered


@pytest.mark.asyncio
async def test_burst_reaches_every_subscriber(service, bus, users, root_bus, netns):
    expect = ROUTES + 2  # DEVICE_ADDED, IPADDR_ADDED, ROUTE_ADDED each
    subs = [await Subscriber.start(bus.address, users.openvpn.name if i % 2 else None,
                                   mask=DEVICE_ADDED | IPADDR_ADDED | ROUTE_ADDED, quiet=True, expect=expect)
            for i in range(SUBSCRIBERS)]
    stalled = await Subscriber.start(bus.address, None, mask=2047, quiet=True)
    stalled.proc.send_signal(signal.SIGSTOP)  # never reads: the daemon buffers for it, not us

    path = await Netcfg(root_bus).configured("burst", [("10.8.0.2", 16, "10.8.0.1", False)], networks())
    stop = asyncio.Event()
    prober = asyncio.ensure_future(keep_calling(root_bus, stop))
    fd = await Netcfg(root_bus).establish(path)
    ifname = tun_name(fd)
    done = await asyncio.gather(*(s.wait_done(60) for s in subs))
    stop.set()
    assert await prober > 0
    assert all(done)

    want = [[DEVICE_ADDED, ifname, ""], [IPADDR_ADDED, ifname, "10.8.0.2"]]
    want += [[ROUTE_ADDED, ifname, n[0]] for n in networks()]
    for s in subs:
        final = await s.close()
        assert final["final"] == expect  # nothing lost, nothing twice
        assert final["changes"] == want  # in order
    await Netcfg(root_bus).call(path, "Destroy")
    os.close(fd)
    assert service.alive()
    stalled.proc.send_signal(signal.SIGCONT)
    await stalled.kill()
    assert "signal queue" not in service.log_text()  # our queues never filled
