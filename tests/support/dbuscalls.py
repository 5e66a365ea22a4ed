"""Calls to the netcfg service for the tests: the one set of names, and the
one client API, in three layers.

* As another UID through the client runner (``support.client``): build the
  steps with :func:`mstep` (any member), :func:`mgr_step` (the manager's),
  :func:`dev_step` (an object's), :func:`get_step`, :func:`set_step`.
* Over a connection of the test itself (e.g. the ``root_bus`` fixture),
  raw: :func:`call` and friends return the reply ``Message`` (method
  return or error) and never raise on a D-Bus error; :func:`ok`,
  :func:`error`, :func:`assert_error` look at it.  For error tests.
* The same connection as a client: :class:`Netcfg`, built on :func:`call`,
  raises :class:`CallFailed` on an error reply.  For everything else.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Sequence

from dbus_fast import Message, MessageType, Variant

from . import NETCFG_BUS_NAME, NETCFG_MANAGER_PATH

INTERFACE = NETCFG_BUS_NAME
MANAGER = NETCFG_MANAGER_PATH
PROPERTIES = "org.freedesktop.DBus.Properties"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
PEER = "org.freedesktop.DBus.Peer"

NETCFG_ERROR = "net.openvpn.v3.netcfg.error"
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
UNKNOWN_PROPERTY = "org.freedesktop.DBus.Error.UnknownProperty"
UNKNOWN_INTERFACE = "org.freedesktop.DBus.Error.UnknownInterface"
PROPERTY_READ_ONLY = "org.freedesktop.DBus.Error.PropertyReadOnly"

# The standard configuration (support/lifecycle.py's tests, Netcfg.configure):
# one address per family, routes with and without a metric (-1 = kernel
# default) in both families, the VPN server.
ADDR4 = ["10.8.0.2", 24, "10.8.0.1", False]
ADDR6 = ["fd00:8::2", 64, "fd00:8::1", True]
NETWORKS = [
    ["192.168.100.0", 24, -1, False, False],
    ["172.16.0.0", 12, 50, False, False],
    ["fd00:100::", 48, -1, True, False],
    ["fd00:200::", 48, 70, True, False],
]
REMOTE = ["198.51.100.7", False]
V6_DEFAULT_METRIC = 1024  # what the kernel gives an IPv6 route without one

# The bus's text when its policy refuses a message (dbus-daemon's, then
# dbus-broker's); the service's own AccessDenied texts contain neither.
BUS_DENIAL_TEXTS = ("Rejected send message", "Sender is not authorized to send message")


def denied_by_bus(text: str) -> bool:
    return any(t in text for t in BUS_DENIAL_TEXTS)


# -- client runner steps -------------------------------------------------
def mgr_step(member: str, signature: str = "", body: Sequence = (), **kw) -> dict:
    """A call of the manager's `member`."""
    return mstep(member, signature=signature, body=body, **kw)


def dev_step(path: Any, member: str, signature: str = "", body: Sequence = (), interface: str = INTERFACE,
             **kw) -> dict:
    """A call of `member` on the object at `path` (a path or a ``{"ref": [step, 0]}``)."""
    return mstep(member, path=path, interface=interface, signature=signature, body=body, **kw)


def mstep(member: str, *, path: Any = MANAGER, interface: str = INTERFACE,
          signature: str = "", body: Sequence = (), **kw) -> dict:
    """A method-call step for the client runner."""
    return {"destination": NETCFG_BUS_NAME, "path": path, "interface": interface,
            "member": member, "signature": signature, "body": list(body), **kw}


def get_step(path: Any, prop: str, **kw) -> dict:
    return mstep("Get", path=path, interface=PROPERTIES, signature="ss",
                 body=[INTERFACE, prop], **kw)


def set_step(path: Any, prop: str, sig: str, value: Any, **kw) -> dict:
    return mstep("Set", path=path, interface=PROPERTIES, signature="ssv",
                 body=[INTERFACE, prop, {"variant": [sig, value]}], **kw)


# -- direct calls (the test's own connection) ----------------------------
async def call(bus, member: str, *, path: str = MANAGER, interface: str | None = INTERFACE,
               signature: str = "", body: Sequence = (), fds: Sequence[int] = (),
               timeout: float = 30.0) -> Message:
    """One method call; the reply Message (return or error)."""
    msg = Message(destination=NETCFG_BUS_NAME, path=path, interface=interface, member=member,
                  signature=signature, body=list(body), unix_fds=list(fds))
    return await asyncio.wait_for(bus.call(msg), timeout)


def ok(reply: Message) -> list:
    """The body of a method return; fails with the error otherwise."""
    assert reply.message_type == MessageType.METHOD_RETURN, (
        f"expected success, got {reply.error_name}: {reply.body}")
    return reply.body


def error(reply: Message) -> tuple[str, str]:
    """(error name, text) of an error reply; fails on a method return."""
    assert reply.message_type == MessageType.ERROR, f"expected an error, got {reply.body!r}"
    text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
    return reply.error_name, text


def assert_error(reply: Message, name: str, *fragments: str) -> str:
    """The reply is error `name` and its text contains every fragment."""
    got, text = error(reply)
    assert got == name, f"expected {name}, got {got}: {text}"
    for f in fragments:
        assert f in text, f"{f!r} not in the error text {text!r}"
    return text


async def get(bus, path: str, prop: str, interface: str = INTERFACE) -> Any:
    body = ok(await call(bus, "Get", path=path, interface=PROPERTIES, signature="ss",
                         body=[interface, prop]))
    return body[0].value


async def get_all(bus, path: str) -> dict[str, Any]:
    body = ok(await call(bus, "GetAll", path=path, interface=PROPERTIES, signature="s",
                         body=[INTERFACE]))
    return {k: v.value for k, v in body[0].items()}


async def set_prop(bus, path: str, prop: str, sig: str, value: Any) -> Message:
    return await call(bus, "Set", path=path, interface=PROPERTIES, signature="ssv",
                      body=[INTERFACE, prop, Variant(sig, value)])


async def introspect(bus, path: str) -> str:
    return ok(await call(bus, "Introspect", path=path, interface=INTROSPECTABLE))[0]


async def create_device(bus, name: str) -> str:
    return ok(await call(bus, "CreateVirtualInterface", signature="s", body=[name]))[0]


async def establish(bus, path: str) -> tuple[str, int]:
    """Establish; returns (kernel name, tun fd).  The tun lives as long as
    the fd: the caller closes it once done with the kernel state."""
    reply = await call(bus, "Establish", path=path)
    fds = list(reply.unix_fds or [])
    if reply.message_type != MessageType.METHOD_RETURN or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        ok(reply)
        raise AssertionError(f"Establish replied with {len(fds)} fds, wanted 1")
    return await get(bus, path, "device_name"), fds[0]


# -- the test's connection as a client -------------------------------------
class CallFailed(AssertionError):
    """A call answered with an error: its D-Bus error name and text."""

    def __init__(self, member: str, name: str, text: str) -> None:
        super().__init__(f"{member}: {name}: {text}")
        self.name, self.text = name, text


class Netcfg:
    """A client of the service over one dbus-fast connection of the test.

    Tun fds: `establish` hands its fd to the caller (the tun lives as long
    as it is open); `bring_up` keeps it, with every other fd a reply
    carried, until `close()`.
    """

    def __init__(self, bus) -> None:
        self.bus = bus
        self.fds: list[int] = []  # received fds the test did not take

    async def call(self, path: str, member: str, signature: str = "", body: Sequence = (),
                   interface: str = INTERFACE, *, fds: Sequence[int] = (), timeout: float = 30) -> Message:
        reply = await call(self.bus, member, path=path, interface=interface, signature=signature, body=body,
                           fds=fds, timeout=timeout)
        if reply.message_type is MessageType.ERROR:
            for fd in reply.unix_fds or []:
                os.close(fd)
            raise CallFailed(member, reply.error_name, reply.body[0] if reply.body else "")
        self.fds += reply.unix_fds or []
        return reply

    def take_fd(self, reply: Message) -> int:
        """The reply's first fd, now the caller's to close."""
        fd = reply.unix_fds[0]
        self.fds.remove(fd)
        return fd

    async def error(self, path: str, member: str, signature: str = "", body: Sequence = (), **kw) -> CallFailed:
        """The error the call must fail with."""
        try:
            reply = await self.call(path, member, signature, body, **kw)
        except CallFailed as e:
            return e
        raise AssertionError(f"{member} on {path} succeeded ({reply.body!r}), an error was expected")

    async def create(self, name: str) -> str:
        return (await self.call(MANAGER, "CreateVirtualInterface", "s", [name])).body[0]

    async def set(self, path: str, prop: str, signature: str, value) -> None:
        await self.call(path, "Set", "ssv", [INTERFACE, prop, Variant(signature, value)], PROPERTIES)

    async def get(self, path: str, prop: str):
        return (await self.call(path, "Get", "ss", [INTERFACE, prop], PROPERTIES)).body[0].value

    async def configured(self, name: str, addresses=(), networks=(), reroute_ipv4: bool = False) -> str:
        """A new layer-3 device with these addresses ((address, prefix, gateway, ipv6)) and networks."""
        path = await self.create(name)
        await self.set(path, "layer", "u", 3)
        if reroute_ipv4:
            await self.set(path, "reroute_ipv4", "b", True)
        for a in addresses:
            await self.call(path, "AddIPAddress", "susb", list(a))
        networks = [list(n) for n in networks]
        for i in range(0, len(networks), 5000):
            await self.call(path, "AddNetworks", "a(suibb)", [networks[i:i + 5000]])
        return path

    async def configure(self, path: str, *, mtu=1420, txqueuelen=0, addresses=(ADDR4, ADDR6),
                        networks=NETWORKS, reroute_ipv4=False, reroute_ipv6=False) -> None:
        """The standard configuration (or parts of it) on a device made by `create`."""
        await self.set(path, "layer", "u", 3)
        await self.set(path, "mtu", "q", mtu)
        if txqueuelen:
            await self.set(path, "txqueuelen", "q", txqueuelen)
        for a in addresses:
            await self.call(path, "AddIPAddress", "susb", a)
        if networks:
            await self.call(path, "AddNetworks", "a(suibb)", [list(networks)])
        await self.call(path, "SetRemoteAddress", "sb", REMOTE)
        if reroute_ipv4:
            await self.set(path, "reroute_ipv4", "b", True)
        if reroute_ipv6:
            await self.set(path, "reroute_ipv6", "b", True)

    async def establish(self, path: str) -> int:
        """Establish; returns the tun fd (the caller closes it)."""
        reply = await self.call(path, "Establish")
        fds = list(reply.unix_fds or [])
        assert reply.signature == "" and reply.body == [], (reply.signature, reply.body)
        assert len(fds) == 1, f"Establish replied with {len(fds)} fds"
        return self.take_fd(reply)

    async def bring_up(self, path: str) -> str:
        """Establish, keeping the tun fd until close(); returns the device's name."""
        await self.call(path, "Establish")
        return await self.get(path, "device_name")

    async def destroy(self, path: str) -> None:
        await self.call(path, "Destroy")

    async def protect(self, remote: str, ipv6: bool, path: str = "/", sock=None) -> bool:
        fds = [sock.fileno()] if sock is not None else []
        return (await self.call(MANAGER, "ProtectSocket", "sbo", [remote, ipv6, path], fds=fds)).body[0]

    async def introspect(self, path: str = MANAGER) -> str:
        return (await self.call(path, "Introspect", interface=INTROSPECTABLE)).body[0]

    async def device_paths(self) -> list[str]:
        return list((await self.call(MANAGER, "FetchInterfaceList")).body[0])

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
