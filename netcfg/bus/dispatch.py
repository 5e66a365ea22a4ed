"""Every method call on our connection, from arrival to reply.

We route calls ourselves instead of using dbus-fast's ServiceInterface:
several members carry fds outside their signatures (spec 1.2-1.4), the
introspection XML must be byte-exact, and every call needs its sender for
authorization.  One message handler sees each call first and:

* takes ownership of attached fds (the libraries leak them, notes 1.6):
  fds on signals and replies are closed at once; a call's fds travel with
  it, fd 0 goes to a member that reads one, and all are closed once the
  call has been served (or refused);
* queues the call per sender, so one client's calls run in the order it
  sent them while other clients are served concurrently;
* checks path, interface, member, signature, then the member's policy, then
  runs the face's handler and maps any exception through bus/errors.py.

Calls in progress are known (`_serving`): at shutdown `quiesce` refuses new
calls and waits for them, so teardown never runs beside one (a
ProtectSocket adding its route after its protection was released).  A
sender's departure is queued behind its own calls, so owner-gone cleanup
waits for that sender's calls in progress too.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from dbus_fast import Message, MessageFlag, MessageType, Variant

from ..kernel.ip import printable
from .access import Caller, Credentials, authorize
from .errors import (
    FAILED, INVALID_ARGS, PROPERTY_READ_ONLY, UNKNOWN_INTERFACE, UNKNOWN_METHOD, UNKNOWN_OBJECT,
    UNKNOWN_PROPERTY, BusError, to_wire,
)
from .members import introspect

log = logging.getLogger(__name__)

PROPERTIES = "org.freedesktop.DBus.Properties"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
PEER = "org.freedesktop.DBus.Peer"
# The standard interfaces' members and their signatures: anything else on
# them is UnknownMethod or InvalidArgs, as with our own members.
STANDARD_MEMBERS = {
    PEER: {"Ping": "", "GetMachineId": ""},
    INTROSPECTABLE: {"Introspect": ""},
    PROPERTIES: {"Get": "ss", "GetAll": "s", "Set": "ssv"},
}
# Caller strings quoted in replies and logs are escaped and cut (a path or a
# property name may be megabytes long); ours are at most ~100 characters.
PATH_LIMIT = 256


@dataclass
class Call:
    msg: Message
    caller: Caller
    fd: int | None = None


@dataclass
class FdReply:
    """A reply body plus one fd in the message's fd list (not in the signature)."""

    body: list
    fd: int


def close_fds(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class Dispatcher:
    def __init__(self, bus, credentials: Credentials, on_activity: Callable[[], None]) -> None:
        self.bus = bus
        self.credentials = credentials
        self.on_activity = on_activity
        self.objects: dict[str, Any] = {}  # path -> its first face (the original interface)
        self.faces: dict[str, dict[str, Any]] = {}  # path -> interface name -> face, in export order
        self.on_name_lost: Callable[[str], Any] = lambda name: None
        self._queues: dict[str, deque] = {}
        self._workers: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones
        self._serving: dict[asyncio.Task, str] = {}  # worker -> the call it serves now
        self.ready = asyncio.Event()  # set once recovery is done: calls wait until then
        self.closing = False  # set at shutdown: calls are refused from then on
        self.machine_id = _machine_id()

    # -- object tree --

    def export(self, face) -> None:
        """Put `face` (one interface: `face.interface`) on the bus at `face.path`.

        An object may have several interfaces, one face each (the manager:
        the original's and the admin one); the first exported is its own
        and answers calls that name no interface.
        """
        self.faces.setdefault(face.path, {})[face.interface] = face
        self.objects.setdefault(face.path, face)

    def unexport(self, path: str) -> None:
        """Remove an object, all its interfaces, and its children (a device's /dco)."""
        for p in [p for p in self.faces if p == path or p.startswith(path + "/")]:
            del self.faces[p]
            self.objects.pop(p, None)

    def children(self, path: str) -> list[str]:
        prefix = "/" if path == "/" else path + "/"
        names = {p[len(prefix):].split("/", 1)[0] for p in self.faces if p.startswith(prefix)}
        return sorted(names)

    # -- arrival --

    def handle(self, msg: Message):
        """dbus-fast message handler: True = we took it (every method call)."""
        if msg.message_type is not MessageType.METHOD_CALL and msg.unix_fds:
            # Anyone may send us a unicast signal, fds attached; nothing takes
            # fds from a signal or a reply, and the library never closes them.
            close_fds(msg.unix_fds)
        if msg.message_type is MessageType.SIGNAL:
            self._on_signal(msg)
            return None
        if msg.message_type is not MessageType.METHOD_CALL:
            return None  # replies to our own calls
        fds = list(msg.unix_fds or [])
        sender = msg.sender or ""
        self.credentials.prefetch(sender)
        self._enqueue(sender, (msg, fds))
        return True

    def _enqueue(self, sender: str, item) -> None:
        queue = self._queues.get(sender)
        if queue is None:
            queue = self._queues[sender] = deque()
            worker = asyncio.ensure_future(self._drain(sender, queue))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        queue.append(item)

    async def _drain(self, sender: str, queue: deque) -> None:
        try:
            while queue:
                item = queue.popleft()
                if item is None:  # the sender left the bus after these calls
                    self.credentials.forget(sender)
                    await self.on_name_lost(sender)
                    continue
                await self._serve(*item)
        except Exception:
            log.exception("call queue of %s", sender)
        finally:
            self._queues.pop(sender, None)
            close_fds(fd for item in queue if item for fd in item[1])

    def _on_signal(self, msg: Message) -> None:
        if (msg.member == "NameOwnerChanged" and msg.sender == "org.freedesktop.DBus"
                and msg.interface == "org.freedesktop.DBus"):
            name, old, new = msg.body
            if name.startswith(":") and old and not new:
                self._enqueue(name, None)
            self.on_owner_changed(name, new)

    def on_owner_changed(self, name: str, new_owner: str) -> None:
        """Overridden by the service to follow net.openvpn.v3.log."""

    # -- serving one call --

    def busy(self) -> bool:
        """A call is queued or being served (a sender's queue lives until it is drained)."""
        return bool(self._queues)

    async def close(self) -> None:
        """After the bus is gone: what a departure started late is cancelled and awaited."""
        workers = set(self._workers)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await self.credentials.close()

    async def quiesce(self, timeout: float) -> None:
        """Refuse calls from now on; wait (at most `timeout` seconds) for those
        in progress and the departures queued behind them; then cancel what
        is still running, and wait for that to unwind (an Establish rolls back)."""
        self.closing = True
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        if self._serving:
            log.info("shutting down: waiting for %d calls in progress: %s", len(self._serving),
                     ", ".join(self._serving.values()))
        while self._workers and loop.time() < end:
            await asyncio.wait(set(self._workers), timeout=end - loop.time())
        if self._workers:
            log.warning("shutting down: %d calls still running after %.0f s, cancelled: %s", len(self._serving),
                        timeout, ", ".join(self._serving.values()) or "-")
            workers = set(self._workers)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _serve(self, msg: Message, fds: list[int]) -> None:
        await self.ready.wait()
        if self.closing:
            close_fds(fds)
            self._reply(Message.new_error(msg, FAILED, "netcfg is shutting down"), msg)
            return
        self.on_activity()
        what = f"{msg.interface or ''}.{msg.member} on {printable(msg.path or '', PATH_LIMIT)}"
        worker = asyncio.current_task()
        self._serving[worker] = f"{what} from {msg.sender}"
        try:
            caller = await self.credentials.lookup(msg.sender or "")
            result = await self._route(msg, caller, fds)
        except Exception as exc:  # every failure becomes an error reply
            name, text = to_wire(exc, what)
            self._reply(Message.new_error(msg, name, text), msg)
            return
        finally:
            self._serving.pop(worker, None)
            close_fds(fds)  # whatever the member did not keep
        if isinstance(result, FdReply):
            await self._reply_with_fd(msg, result)
        else:
            signature, body = result if result is not None else ("", [])
            self._reply(Message.new_method_return(msg, signature, body), msg)

    def _reply(self, reply: Message, msg: Message) -> None:
        if not msg.flags & MessageFlag.NO_REPLY_EXPECTED:
            self.bus.send(reply)

    async def _reply_with_fd(self, msg: Message, result: FdReply) -> None:
        # The library neither dups nor closes fds it sends and writes later:
        # keep ours until the message is out, then close it (notes 1.6.3).
        try:
            if not msg.flags & MessageFlag.NO_REPLY_EXPECTED:
                await self.bus.send(Message.new_method_return(msg, "", result.body, [result.fd]))
        except Exception as e:
            log.warning("reply with fd to %s: %s", msg.sender, e)
        finally:
            close_fds([result.fd])

    async def _route(self, msg: Message, caller: Caller, fds: list[int]):
        iface, member, path = msg.interface, msg.member, msg.path or "/"
        _check_standard(iface, member, msg.signature)
        if iface == PEER and member == "Ping" and msg.signature == "":
            return None
        if iface == PEER and member == "GetMachineId" and msg.signature == "":
            return "s", [self.machine_id]
        faces = self.faces.get(path, {})
        if iface == INTROSPECTABLE and member == "Introspect" and msg.signature == "":
            return "s", [self._introspect(path, list(faces.values()))]
        if not faces:
            raise BusError(UNKNOWN_OBJECT, f"Object does not exist at path '{printable(path, PATH_LIMIT)}'")
        if iface == PROPERTIES:
            return await self._properties(faces, msg, caller)
        face, method = _method(faces, iface, member, path)
        if msg.signature != method.signature and msg.signature not in method.also_accepts:
            raise BusError(INVALID_ARGS, f"Type of message, '({msg.signature})', does not match expected type '({method.signature})'")
        authorize(method.policy, caller, face.owner(), f"{method.name} on {path}")
        # fd 0 stays in `fds`: the handler borrows it, _serve closes it after.
        fd = fds[0] if method.fd_in and fds else None
        call = Call(msg, caller, fd)
        if method.handler is not None:  # a member added to a face from elsewhere
            result = await method.handler(face, call, *msg.body)
        else:
            result = await getattr(face, method.name)(call, *msg.body)
        if method.fd_out:
            return result
        return (method.out_signature, result) if method.out_signature else None

    def _introspect(self, path: str, faces: list) -> str:
        children = self.children(path)
        if not faces:
            if not children and path != "/":
                raise BusError(UNKNOWN_OBJECT, f"Object does not exist at path '{printable(path, PATH_LIMIT)}'")
            return introspect(None, (), (), (), children)
        first, more = faces[0], faces[1:]
        return introspect(first.interface, first.methods.values(), first.properties.values(), first.signals,
                          children, [(f.interface, f.methods.values(), f.properties.values(), f.signals) for f in more])

    async def _properties(self, faces: dict, msg: Message, caller: Caller):
        member, sig, body = msg.member, msg.signature, msg.body
        if member == "Get" and sig == "ss":
            face, prop = _property(faces, *body)
            authorize(prop.read, caller, face.owner(), f"Get {prop.name}")
            return "v", [Variant(prop.type, prop.getter(face))]
        if member == "GetAll" and sig == "s":
            # "" means the object's own (original) interface, as before there were others.
            face = _face(faces, body[0]) if body[0] else next(iter(faces.values()))
            props = [p for p in face.properties.values() if _readable(p, caller, face)]
            return "a{sv}", [{p.name: Variant(p.type, p.getter(face)) for p in props}]
        if member == "Set" and sig == "ssv":
            face, prop = _property(faces, body[0], body[1])
            if prop.setter is None:
                raise BusError(PROPERTY_READ_ONLY, f"Property '{prop.name}' is read-only")
            authorize(prop.write, caller, face.owner(), f"Set {prop.name}")
            value: Variant = body[2]
            if value.signature != prop.type:
                raise BusError(INVALID_ARGS, f"Error setting property '{prop.name}': Expected type '{prop.type}' but got '{value.signature}'")
            await prop.setter(face, value.value)
            self.emit(face.path, PROPERTIES, "PropertiesChanged", "sa{sv}as",
                      [face.interface, {prop.name: Variant(prop.type, prop.getter(face))}, []])
            return None
        raise BusError(UNKNOWN_METHOD, f"No such method '{member}' with signature '{sig}'")

    def emit(self, path: str, interface: str, member: str, signature: str, body: list, destination: str | None = None):
        return self.bus.send(Message.new_signal(path, interface, member, signature, body) if destination is None
                             else Message(message_type=MessageType.SIGNAL, path=path, interface=interface,
                                          member=member, signature=signature, body=body, destination=destination))


def _check_standard(iface: str | None, member: str, signature: str) -> None:
    members = STANDARD_MEMBERS.get(iface)
    if members is None:
        return
    if member not in members:
        raise BusError(UNKNOWN_METHOD, f"No such method '{member}' in interface '{iface}'")
    if signature != members[member]:
        raise BusError(INVALID_ARGS, f"Type of message, '({signature})', does not match expected type '({members[member]})'")


def _face(faces: dict, iface: str):
    face = faces.get(iface)
    if face is None:
        raise BusError(UNKNOWN_INTERFACE, f"No such interface '{printable(iface)}'")
    return face


def _method(faces: dict, iface: str | None, member: str, path: str):
    """The face and member a call is for; no interface: the first face that has it."""
    if iface is None:
        for face in faces.values():
            if member in face.methods:
                return face, face.methods[member]
        raise BusError(UNKNOWN_METHOD, f"No such method '{member}'")
    face = faces.get(iface)
    if face is None:
        raise BusError(UNKNOWN_INTERFACE, f"No such interface '{iface}' at path '{printable(path, PATH_LIMIT)}'")
    method = face.methods.get(member)
    if method is None:
        raise BusError(UNKNOWN_METHOD, f"No such method '{member}'")
    return face, method


def _property(faces: dict, iface: str, name: str):
    """The face and property Get/Set name; interface "": the first face that has it."""
    candidates = [_face(faces, iface)] if iface else list(faces.values())
    for face in candidates:
        prop = face.properties.get(name)
        if prop is not None:
            return face, prop
    raise BusError(UNKNOWN_PROPERTY, f"No such property '{printable(name)}'")


def _readable(prop, caller: Caller, face) -> bool:
    try:
        authorize(prop.read, caller, face.owner(), prop.name)
        return True
    except Exception:
        return False


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            continue
    return "0" * 32
