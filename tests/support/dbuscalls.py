"""Calls to the netcfg service for the service tests: names, step builders
for the client runner, and direct calls over a test-owned connection.

Two ways to call the service:

* as another UID through the client runner (``support.client``): build the
  steps with :func:`mstep`, :func:`dstep`, :func:`set_step` ...;
* as root over a connection of the test itself (e.g. the ``root_bus``
  fixture) with :func:`call` and friends, which return the raw reply
  ``Message`` (method return or error) and never raise on a D-Bus error.
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

# The bus's text when its policy refuses a message (dbus-daemon's, then
# dbus-broker's); the service's own AccessDenied texts contain neither.
BUS_DENIAL_TEXTS = ("Rejected send message", "Sender is not authorized to send message")


def denied_by_bus(text: str) -> bool:
    return any(t in text for t in BUS_DENIAL_TEXTS)


# -- client runner steps -------------------------------------------------
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
