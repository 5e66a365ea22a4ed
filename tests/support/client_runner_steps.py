"""Client runner, its steps: what the runner process does for each step.

Part of the client runner program (``client_runner.py``, which reads the steps
and prints the results): runs as other UIDs from a copy of these files, needs
only the standard library and ``dbus_fast``.  ``Runner`` holds the bus
connections, the signals received on them, the earlier results (for refs) and
every fd the process must keep open until it exits.

Steps (objects), each giving one result:

* A method call, the default kind::

    {"destination": "net.openvpn.v3.netcfg", "path": "/net/openvpn/v3/netcfg",
     "interface": "net.openvpn.v3.netcfg", "member": "CreateVirtualInterface",
     "signature": "s", "body": ["tun-test"],
     "fd": "udp4",           # optional: attach fds, see below
     "timeout": 10,          # seconds, default 10 -> error "client.Timeout"
     "no_reply": false}      # true: send with NO_REPLY_EXPECTED, don't wait

  ``"fd"`` is one kind or a list of kinds (``client_runner_values.make_fd``);
  the message's ``unix_fds`` are those fds in that order, so an ``h``
  argument is the INDEX into them (``0`` for the first).  The client keeps
  them open until it exits.  Received fds are kept open too; the reply
  reports their count (``fds``) and ``readlink /proc/self/fd/N``
  (``fd_targets``).

* ``{"sleep": 0.5}`` -- wait; result ``{"ok": true}``.
* ``{"wait_for_file": "/path", "timeout": 30}`` -- wait until the file
  exists (a barrier the test opens once it saw what it waits for);
  result ``{"ok": true}``, or error ``client.Timeout``.
* ``{"signals": true}`` -- result body: the signals received so far
  (``[{"sender","path","interface","member","signature","body"}]``), which
  arrive once a step called ``org.freedesktop.DBus.AddMatch``.
* ``{"unique_name": true}`` -- result body: ``[":1.42"]``.
* ``"connection": N`` (any call, ``unique_name`` or ``signals`` step) --
  use the runner's N-th bus connection instead of the first (0, the
  default).  Connections 1, 2, ... are opened on first use and stay open
  until the runner exits: one process with several connections (same UID
  and PID, different unique names).  ``signals`` lists what arrived on that
  connection only.

(``{"hold": true}`` is handled by ``client_runner.py`` itself.)
"""

from __future__ import annotations

import asyncio
import os

from dbus_fast import Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus

if __package__:  # imported as part of the tests' ``support`` package
    from .client_runner_values import StepError, decode, encode, fd_target, make_fd
else:  # in the runner process: a top-level module next to client_runner.py
    from client_runner_values import StepError, decode, encode, fd_target, make_fd


class Runner:
    def __init__(self, bus: MessageBus, address: str | None = None) -> None:
        self.bus = bus  # connection 0
        self.address = address
        self.buses: list[MessageBus] = []
        self.signal_lists: list[list[dict]] = []
        self.results: list[dict] = []
        self.keep: list = []  # our fds: sockets and raw ints
        self._add_bus(bus)
        self.signals = self.signal_lists[0]

    def _add_bus(self, bus: MessageBus) -> None:
        received: list[dict] = []
        self.buses.append(bus)
        self.signal_lists.append(received)
        bus.add_message_handler(lambda msg: self._on_message(msg, received))

    async def connection(self, st: dict) -> tuple[MessageBus, list[dict]]:
        """The bus connection (and its signal list) a step asks for."""
        index = st.get("connection", 0)
        if not isinstance(index, int) or index < 0 or index > 16:
            raise StepError("client.BadStep", f"bad connection index {index!r}")
        while len(self.buses) <= index:
            if self.address is None:
                raise StepError("client.BadStep", "no address for more connections")
            try:
                bus = await asyncio.wait_for(
                    MessageBus(bus_address=self.address, negotiate_unix_fd=True).connect(), 10
                )
            except Exception as e:
                raise StepError("client.ConnectFailed", f"{type(e).__name__}: {e}") from None
            self._add_bus(bus)
        return self.buses[index], self.signal_lists[index]

    def _on_message(self, msg: Message, received: list[dict]) -> None:
        if msg.message_type == MessageType.SIGNAL:
            received.append(
                {
                    "sender": msg.sender,
                    "path": msg.path,
                    "interface": msg.interface,
                    "member": msg.member,
                    "signature": msg.signature,
                    "body": encode(msg.body),
                }
            )
            # received fds of signals stay open, like replies' fds
            self.keep.extend(msg.unix_fds or [])
        return None

    async def step(self, st: dict) -> dict:
        if "sleep" in st:
            await asyncio.sleep(float(st["sleep"]))
            return {"ok": True}
        if "wait_for_file" in st:
            loop = asyncio.get_running_loop()
            end = loop.time() + float(st.get("timeout", 30))
            while not os.path.exists(st["wait_for_file"]):
                if loop.time() > end:
                    raise StepError("client.Timeout", f"{st['wait_for_file']} did not appear")
                await asyncio.sleep(0.01)
            return {"ok": True}
        bus, received = await self.connection(st)
        if st.get("signals"):
            return {"ok": True, "body": list(received), "_body": list(received)}
        if st.get("unique_name"):
            return {"ok": True, "body": [bus.unique_name], "_body": [bus.unique_name]}
        return await self.call(st, bus)

    async def call(self, st: dict, bus: MessageBus | None = None) -> dict:
        bus = self.bus if bus is None else bus
        r = self.results
        kinds = st.get("fd", [])
        if isinstance(kinds, str):
            kinds = [kinds]
        fds = [make_fd(k, self.keep) for k in kinds]
        try:
            msg = Message(
                destination=decode(st.get("destination"), r),
                path=decode(st["path"], r),
                interface=decode(st.get("interface"), r),
                member=decode(st["member"], r),
                signature=st.get("signature", ""),
                body=decode(st.get("body", []), r),
                unix_fds=fds,
                flags=MessageFlag.NO_REPLY_EXPECTED if st.get("no_reply") else MessageFlag.NONE,
            )
        except StepError:
            raise
        except Exception as e:
            raise StepError("client.BadMessage", f"{type(e).__name__}: {e}") from None
        try:
            if st.get("no_reply"):
                await bus.send(msg)
                return {"ok": True, "body": [], "fds": 0}
            reply = await asyncio.wait_for(bus.call(msg), float(st.get("timeout", 10)))
        except asyncio.TimeoutError:
            raise StepError("client.Timeout", "no reply in time") from None
        except Exception as e:  # body does not match the signature, ...
            raise StepError("client.BadMessage", f"{type(e).__name__}: {e}") from None
        if reply is None:
            raise StepError("client.NoReply", "no reply")
        rfds = list(reply.unix_fds or [])
        self.keep.extend(rfds)
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            return {"ok": False, "error": reply.error_name, "text": text}
        return {
            "ok": True,
            "body": encode(reply.body),
            "_body": reply.body,
            "signature": reply.signature,
            "fds": len(rfds),
            "fd_targets": [fd_target(fd) for fd in rfds],
        }

    def close(self) -> None:
        for k in self.keep:
            try:
                if isinstance(k, int):
                    os.close(k)
                else:
                    k.close()
            except OSError:
                pass
