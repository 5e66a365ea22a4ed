"""netcfgctl's D-Bus client: the system bus (or $DBUS_SYSTEM_BUS_ADDRESS), calls, errors.

D-Bus errors become CtlError with an exit code: AccessDenied (from the
bus policy or the service's own check) is a refusal for non-root users,
a missing service is "unreachable".  Replies are unwrapped into plain
Python values (Variants opened, recursively), which is also the JSON
netcfgctl prints.
"""

from __future__ import annotations

import asyncio

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from .errors import DENIED, FAILED, UNREACHABLE, CtlError

BUS_NAME = "net.openvpn.v3.netcfg"
INTERFACE = "net.openvpn.v3.netcfg"
ADMIN = "net.openvpn.v3.netcfg.admin"
MANAGER = "/net/openvpn/v3/netcfg"
PROPERTIES = "org.freedesktop.DBus.Properties"
TIMEOUT = 30.0  # seconds for one call (an activation included)

_UNREACHABLE = {"org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
                "org.freedesktop.DBus.Error.Spawn.ChildExited", "org.freedesktop.DBus.Error.Spawn.Failed",
                "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.TimedOut"}


def plain(value):
    """A reply value with every Variant opened (lists, dicts, structs too)."""
    if isinstance(value, Variant):
        return plain(value.value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Client:
    def __init__(self) -> None:
        self.bus: MessageBus | None = None

    async def connect(self) -> "Client":
        try:
            self.bus = await asyncio.wait_for(MessageBus(bus_type=BusType.SYSTEM).connect(), TIMEOUT)
        except (OSError, asyncio.TimeoutError, Exception) as e:
            raise CtlError(UNREACHABLE, f"cannot connect to the system bus: {e or type(e).__name__}") from None
        return self

    @property
    def unique_name(self) -> str:
        return self.bus.unique_name

    def close(self) -> None:
        if self.bus is not None and self.bus.connected:
            self.bus.disconnect()

    async def call(self, member: str, signature: str = "", body: list | None = None, *,
                   interface: str = INTERFACE, path: str = MANAGER, destination: str = BUS_NAME) -> list:
        msg = Message(destination=destination, path=path, interface=interface, member=member,
                      signature=signature, body=body or [])
        try:
            reply = await asyncio.wait_for(self.bus.call(msg), TIMEOUT)
        except asyncio.TimeoutError:
            raise CtlError(UNREACHABLE, f"{member}: no answer from {destination} within {TIMEOUT:.0f} s") from None
        if reply.message_type is MessageType.ERROR:
            raise _error(member, reply.error_name, reply.body[0] if reply.body else "")
        return plain(reply.body)

    async def get(self, name: str, interface: str = INTERFACE, path: str = MANAGER):
        return (await self.call("Get", "ss", [interface, name], interface=PROPERTIES, path=path))[0]

    async def get_all(self, interface: str, path: str = MANAGER) -> dict:
        return (await self.call("GetAll", "s", [interface], interface=PROPERTIES, path=path))[0]

    async def set(self, name: str, signature: str, value, interface: str = INTERFACE, path: str = MANAGER) -> None:
        await self.call("Set", "ssv", [interface, name, Variant(signature, value)], interface=PROPERTIES, path=path)

    async def bus_daemon(self, member: str, signature: str = "", body: list | None = None) -> list:
        return await self.call(member, signature, body, interface="org.freedesktop.DBus",
                               path="/org/freedesktop/DBus", destination="org.freedesktop.DBus")

    async def credentials(self, name: str) -> dict:
        """UnixUserID / ProcessID of a connection, {} when it is gone."""
        try:
            return (await self.bus_daemon("GetConnectionCredentials", "s", [name]))[0]
        except CtlError:
            return {}


def _error(member: str, name: str, text: str) -> CtlError:
    if name in _UNREACHABLE:
        return CtlError(UNREACHABLE, f"netcfg ({BUS_NAME}) is not reachable: {text or name}")
    if name == "org.freedesktop.DBus.Error.AccessDenied":
        return CtlError(DENIED, f"{member}: permission denied; this needs root ({text or name})")
    return CtlError(FAILED, f"{member}: {text or name}")
