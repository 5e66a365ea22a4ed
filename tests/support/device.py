"""Driving netcfg from a test's own connection (root may call every member).

    path = await create_device(bus, "ev1", addresses=[...], networks=[...])
    fd, ifname = await establish(bus, path)     # the test holds the tun fd
    await call(bus, path, "Destroy"); os.close(fd)
"""

from __future__ import annotations

from dbus_fast import Message, MessageType, Variant

from . import NETCFG_BUS_NAME, NETCFG_MANAGER_PATH

PROPS = "org.freedesktop.DBus.Properties"


class CallFailed(AssertionError):
    def __init__(self, member: str, name: str, text: str) -> None:
        super().__init__(f"{member}: {name}: {text}")
        self.name, self.text = name, text


async def call(bus, path: str, member: str, signature: str = "", body: list | None = None,
               interface: str = NETCFG_BUS_NAME) -> Message:
    reply = await bus.call(Message(destination=NETCFG_BUS_NAME, path=path, interface=interface, member=member,
                                   signature=signature, body=body or []))
    if reply.message_type is MessageType.ERROR:
        raise CallFailed(member, reply.error_name, reply.body[0] if reply.body else "")
    return reply


async def create_device(bus, name: str, addresses=(), networks=(), reroute_ipv4: bool = False) -> str:
    """addresses: (address, prefix, gateway, ipv6); networks: (address, prefix, metric, ipv6, exclude)."""
    path = (await call(bus, NETCFG_MANAGER_PATH, "CreateVirtualInterface", "s", [name])).body[0]
    await call(bus, path, "Set", "ssv", [NETCFG_BUS_NAME, "layer", Variant("u", 3)], PROPS)
    if reroute_ipv4:
        await call(bus, path, "Set", "ssv", [NETCFG_BUS_NAME, "reroute_ipv4", Variant("b", True)], PROPS)
    for a in addresses:
        await call(bus, path, "AddIPAddress", "susb", list(a))
    networks = [list(n) for n in networks]
    for i in range(0, len(networks), 5000):
        await call(bus, path, "AddNetworks", "a(suibb)", [networks[i:i + 5000]])
    return path


async def establish(bus, path: str) -> tuple[int, str]:
    reply = await call(bus, path, "Establish")
    fd = reply.unix_fds[0]
    name = (await call(bus, path, "Get", "ss", [NETCFG_BUS_NAME, "device_name"], PROPS)).body[0].value
    return fd, name
