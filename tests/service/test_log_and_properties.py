"""Signals of issue 3 on the real bus: the unicast ``Log`` signal to the
owner of ``net.openvpn.v3.log`` (spec 9) and ``PropertiesChanged`` after a
successful ``Set`` only (spec 1.1).

The log service is played by the test's root connection (a bus policy
snippet lets root own the name); the same connection makes the calls, so a
signal the service sent before a reply has arrived when the reply has:
"no signal" can be checked without waiting.
"""

from __future__ import annotations

import os
import re
import socket

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from support import NETCFG_BUS_NAME, NETCFG_MANAGER_PATH
from support.client import arun_client
from support.lifecycle import (
    ACCESS_DENIED, INVALID_ARGS, IFACE, PROPS, Netcfg, set_step, wait_until,
)

pytestmark = pytest.mark.asyncio

LOG_NAME = "net.openvpn.v3.log"
# What the log service's own policy file provides: its owner, and producers
# that may call Attach/Detach on it.
LOG_POLICY = (f'<policy user="root"><allow own="{LOG_NAME}"/>'
              f'<allow send_destination="{LOG_NAME}" send_interface="{LOG_NAME}" send_member="Attach"/>'
              f'<allow send_destination="{LOG_NAME}" send_interface="{LOG_NAME}" send_member="Detach"/></policy>')
DBUS = dict(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus", interface="org.freedesktop.DBus")
# spec 9: LogCategory on the wire
DEBUG, VERB2, VERB1, INFO, WARN, ERROR = 1, 2, 3, 4, 5, 6


class Recorder:
    """Signals received on one connection, filtered by member."""

    def __init__(self, bus, member: str) -> None:
        self.member = member
        self.msgs: list[Message] = []
        bus.add_message_handler(self._on)

    def _on(self, msg: Message):
        if msg.message_type is MessageType.SIGNAL and msg.member == self.member:
            self.msgs.append(msg)
        return None

    def take(self) -> list[Message]:
        out, self.msgs = self.msgs, []
        return out


async def bus_call(bus, member: str, signature: str = "", body=()):
    reply = await bus.call(Message(**DBUS, member=member, signature=signature, body=list(body)))
    assert reply.message_type is MessageType.METHOD_RETURN, (member, reply.error_name, reply.body)
    return reply.body


def levels_of(logs: list[Message], pattern: str) -> set[int]:
    return {m.body[1] for m in logs if re.search(pattern, m.body[2])}


async def protect_without_uplink(nc: Netcfg) -> None:
    """ProtectSocket with no route to the remote: a WARNING, answer false."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        reply = await nc.bus.call(Message(
            destination=NETCFG_BUS_NAME, path=NETCFG_MANAGER_PATH, interface=IFACE, member="ProtectSocket",
            signature="sbo", body=["198.51.100.7", False, "/"], unix_fds=[s.fileno()]))
    assert reply.body == [False], (reply.error_name, reply.body)


# -- Log -------------------------------------------------------------------
async def test_log_signals_to_the_log_service(service_factory, bus, bus_policy, root_bus, users):
    bus_policy("netcfg-test-log-owner", LOG_POLICY)
    logs = Recorder(root_bus, "Log")
    assert await bus_call(root_bus, "RequestName", "su", [LOG_NAME, 4]) == [1]
    calls = []  # netcfg attaches to the log service as a producer (spec 4.1 step 5)
    root_bus.add_message_handler(lambda m: calls.append((m.member, m.body)) if (
        m.message_type is MessageType.METHOD_CALL and m.path == "/net/openvpn/v3/log") else None)
    # Another connection listening for every Log signal must get none: unicast.
    bystander = await MessageBus(bus_address=bus.address).connect()
    try:
        seen = Recorder(bystander, "Log")
        await bus_call(bystander, "AddMatch", "s", ["type='signal',member='Log'"])
        svc = await service_factory()
        nc = Netcfg(root_bus)

        path = await nc.create("logged")                                # INFO
        await nc.call(NETCFG_MANAGER_PATH, "NotificationSubscribe", "u", [1])  # VERB2
        assert (await nc.error(path, "Set", "ssv", [IFACE, "mtu", Variant("q", 10)],
                               interface=PROPS)).name == INVALID_ARGS    # VERB1
        await protect_without_uplink(nc)                                 # WARNING
        await nc.configure(path, networks=[["192.168.7.0", 24, -1, False, False]])
        fd = await nc.establish(path)                                    # DEBUG (route batch)
        os.close(fd)
        await nc.destroy(path)
        client = await arun_client(svc.bus_address, [
            {"destination": NETCFG_BUS_NAME, "path": NETCFG_MANAGER_PATH, "interface": IFACE,
             "member": "CreateVirtualInterface", "signature": "s", "body": ["gone"]}],
            user=users.openvpn.name)                                     # ERROR when it exits
        assert client[0]["ok"], client
        await wait_until(lambda: levels_of(logs.msgs, "disappeared! Cleaning up"), what="the ERROR Log signal")

        assert ("Attach", [NETCFG_BUS_NAME]) in calls
        msgs = logs.take()
        for m in msgs:
            # from the emitting object: the manager, or a device below it (spec 9)
            assert m.path.startswith(NETCFG_MANAGER_PATH), m.path
            assert (m.sender, m.interface, m.signature) == (svc.unique_name, IFACE, "uus")
            assert m.destination == root_bus.unique_name
            group, level, text = m.body
            assert group == 8 and DEBUG <= level <= 8
            assert not re.search(r"[\x00-\x1f]", text)
        assert levels_of(msgs, r"netcfg serving") == {INFO}
        assert levels_of(msgs, r"device .*_logged created") == {INFO}
        assert levels_of(msgs, r"New subscription") == {VERB2}
        assert levels_of(msgs, r"mtu 10 is out of range") == {VERB1}
        assert levels_of(msgs, r"cannot protect 198\.51\.100\.7") == {WARN}
        assert levels_of(msgs, r"route batch add") == {DEBUG}
        assert levels_of(msgs, r"disappeared! Cleaning up") == {ERROR}
        # a device's own lines come from its path (spec 9), the manager's from the manager
        assert {m.path for m in msgs if "established as" in m.body[2]} == {path}
        assert {m.path for m in msgs if "netcfg serving" in m.body[2]} == {NETCFG_MANAGER_PATH}

        # The manager's log_level filters (spec 9): 3 = INFO and above.
        await nc.set(NETCFG_MANAGER_PATH, "log_level", "u", 3)
        logs.take()
        path = await nc.create("filtered")                               # INFO: sent
        await nc.call(NETCFG_MANAGER_PATH, "NotificationUnsubscribe", "s", [root_bus.unique_name])
        await nc.call(NETCFG_MANAGER_PATH, "NotificationSubscribe", "u", [2])  # VERB2: not
        await nc.error(path, "Set", "ssv", [IFACE, "mtu", Variant("q", 10)], interface=PROPS)  # VERB1: not
        await nc.set(NETCFG_MANAGER_PATH, "log_level", "u", 1)
        await protect_without_uplink(nc)                                 # WARNING at level 1: not
        await nc.destroy(path)                                           # INFO at level 1: not
        msgs = logs.take()
        assert {m.body[1] for m in msgs} <= {INFO, WARN, ERROR}, [m.body for m in msgs]
        assert levels_of(msgs, r"device .*_filtered created") == {INFO}
        assert not levels_of(msgs, r"New subscription|out of range|cannot protect|removed")

        await svc.ping(bystander)
        assert seen.msgs == [], "Log signals must be unicast to the log service"
    finally:
        bystander.disconnect()


async def test_log_service_may_come_and_go(service, bus_policy, root_bus):
    """No log service: the service runs.  One appearing later is followed;
    when it leaves again the service carries on."""
    bus_policy("netcfg-test-log-owner", LOG_POLICY)
    logs = Recorder(root_bus, "Log")
    nc = Netcfg(root_bus)
    await nc.destroy(await nc.create("before"))
    assert logs.take() == []

    assert await bus_call(root_bus, "RequestName", "su", [LOG_NAME, 4]) == [1]
    await nc.destroy(await nc.create("during"))
    assert [m.body[1] for m in logs.take() if "_during" in m.body[2]] == [INFO, INFO]

    assert await bus_call(root_bus, "ReleaseName", "s", [LOG_NAME]) == [1]
    await nc.destroy(await nc.create("after"))
    await service.ping(root_bus)
    assert logs.take() == []


# -- PropertiesChanged -------------------------------------------------------
PROPS_RULE = ("type='signal',interface='org.freedesktop.DBus.Properties',"
              f"member='PropertiesChanged',sender='{NETCFG_BUS_NAME}'")


def changes(msgs: list[Message]) -> list[tuple]:
    return [(m.path, m.body[0], {k: (v.signature, v.value) for k, v in m.body[1].items()}, m.body[2])
            for m in msgs]


async def test_properties_changed_after_successful_set_only(service, root_bus, users):
    nc = Netcfg(root_bus)
    signals = Recorder(root_bus, "PropertiesChanged")
    await bus_call(root_bus, "AddMatch", "s", [PROPS_RULE])
    path = await nc.create("props")

    await nc.set(path, "mtu", "q", 1400)
    await nc.set(path, "layer", "u", 3)
    await nc.set(path, "reroute_ipv6", "b", True)
    await nc.set(NETCFG_MANAGER_PATH, "log_level", "u", 5)
    assert changes(signals.take()) == [
        (path, IFACE, {"mtu": ("q", 1400)}, []),
        (path, IFACE, {"layer": ("u", 3)}, []),
        (path, IFACE, {"reroute_ipv6": ("b", True)}, []),
        (NETCFG_MANAGER_PATH, IFACE, {"log_level": ("u", 5)}, []),
    ]
    assert all(m.destination is None for m in signals.msgs)  # broadcast

    failing = [
        (path, "mtu", Variant("q", 10), INVALID_ARGS),           # out of range
        (path, "mtu", Variant("u", 1400), INVALID_ARGS),         # wrong type
        (path, "layer", Variant("u", 7), INVALID_ARGS),
        (path, "dns_scope", Variant("s", "nowhere"), INVALID_ARGS),
        (path, "owner", Variant("u", 0), "org.freedesktop.DBus.Error.PropertyReadOnly"),
        (path, "no_such", Variant("u", 0), "org.freedesktop.DBus.Error.UnknownProperty"),
        (NETCFG_MANAGER_PATH, "log_level", Variant("u", 9), INVALID_ARGS),
    ]
    for obj, prop, value, error in failing:
        err = await nc.error(obj, "Set", "ssv", [IFACE, prop, value], interface=PROPS)
        assert err.name == error, (prop, value, err)
    # Not the creator: the service refuses (the bus policy lets openvpn through).
    res = await arun_client(service.bus_address, [set_step(path, "mtu", "q", 1300)], user=users.openvpn.name)
    assert res[0]["error"] == ACCESS_DENIED
    # A successful Set as a marker: everything before it has arrived.
    await nc.set(path, "reroute_ipv4", "b", True)
    assert changes(signals.take()) == [(path, IFACE, {"reroute_ipv4": ("b", True)}, [])]
    assert await nc.get(path, "mtu") == 1400
    await nc.destroy(path)
