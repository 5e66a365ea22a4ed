#!/usr/bin/env python3
"""A NetworkChange subscriber process for the tests (script + launcher).

Script (needs only dbus_fast; runs as other UIDs like client_runner.py)::

    subscriber.py --address A [--mask M] [--quiet] [--expect N]

Connects; with --mask calls NotificationSubscribe(M) and prints
{"subscribed": true|false, "name": ":1.N", "error": ..}; without it prints
{"subscribed": false, "name": ..} and adds a match rule for every signal,
like a bystander listening to everything it may see.  Then, per signal:
{"signal": {sender, destination, path, interface, member, body}}, or, with
--quiet, nothing until {"done": N} once N NetworkChange signals arrived.
A JSON line on stdin is a method call to make ({member, signature, body,
destination?, path?, interface?}); its reply is printed as {"reply": ..}.
At EOF on stdin: {"final": count, "changes": [[type, device, subnet or
address or ""], ...]} and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

NAME = "net.openvpn.v3.netcfg"
MANAGER = "/net/openvpn/v3/netcfg"


def say(obj) -> None:
    sys.stdout.write(json.dumps(obj, default=lambda v: {"variant": [v.signature, v.value]}) + "\n")
    sys.stdout.flush()


async def call(bus, st: dict) -> dict:
    reply = await bus.call(Message(destination=st.get("destination", NAME), path=st.get("path", MANAGER),
                                   interface=st.get("interface", NAME), member=st["member"],
                                   signature=st.get("signature", ""), body=st.get("body", [])))
    if reply.message_type is MessageType.ERROR:
        return {"ok": False, "error": reply.error_name, "text": reply.body[0] if reply.body else ""}
    return {"ok": True, "body": reply.body}


async def amain(a) -> None:
    bus = await MessageBus(bus_address=a.address).connect()
    changes = []

    def on_message(msg: Message):
        if msg.message_type is not MessageType.SIGNAL or msg.sender == "org.freedesktop.DBus":
            return None
        if msg.member == "NetworkChange":
            t, dev, details = msg.body
            changes.append([t, dev, details.get("subnet") or details.get("ip_address") or ""])
            if a.quiet and len(changes) == a.expect:
                say({"done": len(changes)})
        if not a.quiet:
            say({"signal": {"sender": msg.sender, "destination": msg.destination, "path": msg.path,
                            "interface": msg.interface, "member": msg.member, "body": msg.body}})
        return None

    bus.add_message_handler(on_message)
    if a.mask is not None:
        r = await call(bus, {"member": "NotificationSubscribe", "signature": "u", "body": [a.mask]})
        say({"subscribed": r["ok"], "name": bus.unique_name, "error": r.get("error")})
    else:
        await call(bus, {"destination": "org.freedesktop.DBus", "path": "/org/freedesktop/DBus",
                         "interface": "org.freedesktop.DBus", "member": "AddMatch", "signature": "s",
                         "body": ["type='signal'"]})
        say({"subscribed": False, "name": bus.unique_name})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", 0))
    while line := await reader.readline():
        say({"reply": await call(bus, json.loads(line))})
    say({"final": len(changes), "changes": changes})
    bus.disconnect()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--mask", type=int)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--expect", type=int, default=0)
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())


# ======================================================================
# Launcher side (the tests, as root).
# ======================================================================

import shutil as _shutil  # noqa: E402
import time as _time  # noqa: E402

from .client_runtime import _env, _ids, _popen_kw, client_runtime  # noqa: E402


class Subscriber:
    """A running subscriber.py; `lines` holds everything it printed so far."""

    def __init__(self, proc, name: str, subscribed: bool, error: str | None) -> None:
        self.proc, self.name, self.subscribed, self.error = proc, name, subscribed, error
        self.lines: list[dict] = []

    @classmethod
    async def start(cls, address: str, user: str | None = None, mask: int | None = 2047,
                    quiet: bool = False, expect: int = 0) -> "Subscriber":
        rt = client_runtime(user)
        script = os.path.join(rt.directory, "subscriber.py")
        if not os.path.exists(script):
            _shutil.copy2(__file__, script)
            os.chmod(script, 0o644)
        uid, gid = _ids(user, None)
        args = ["--address", address] + (["--mask", str(mask)] if mask is not None else [])
        args += ["--quiet", "--expect", str(expect)] if quiet else []
        proc = await asyncio.create_subprocess_exec(
            rt.python, "-s", script, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=_env(rt.directory), cwd="/", limit=1 << 26, **_popen_kw(uid, gid, None))
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        return cls(proc, first["name"], first["subscribed"], first.get("error"))

    async def _read(self, timeout: float) -> dict | None:
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            return None
        self.lines.append(json.loads(raw))
        return self.lines[-1]

    def changes(self) -> list[list]:
        """[type, device, details] of the NetworkChange signals seen so far."""
        return [ln["signal"]["body"] for ln in self.lines if "signal" in ln and ln["signal"]["member"] == "NetworkChange"]

    def signals(self) -> list[dict]:
        return [ln["signal"] for ln in self.lines if "signal" in ln]

    async def wait_changes(self, count: int, timeout: float = 20) -> list[list]:
        """Until `count` NetworkChange signals arrived (fails after timeout)."""
        end = _time.monotonic() + timeout
        while len(self.changes()) < count:
            left = end - _time.monotonic()
            if left <= 0 or await self._read(left) is None:
                raise AssertionError(f"{len(self.changes())}/{count} changes: {self.changes()}")
        return self.changes()

    async def settle(self, quiet_for: float = 0.5) -> None:
        """Read what arrives until nothing has for `quiet_for` seconds."""
        try:
            while await self._read(quiet_for) is not None:
                pass
        except asyncio.TimeoutError:
            pass

    async def wait_done(self, timeout: float) -> bool:
        while True:
            line = await self._read(timeout)
            if line is None:
                return False
            if "done" in line:
                return True

    async def call(self, member: str, signature: str = "", body: list | None = None) -> dict:
        self.proc.stdin.write((json.dumps({"member": member, "signature": signature, "body": body or []}) + "\n").encode())
        await self.proc.stdin.drain()
        while True:
            line = await self._read(20)
            if line is None:
                raise AssertionError("subscriber exited")
            if "reply" in line:
                return line["reply"]

    async def close(self) -> dict:
        """EOF on its stdin; returns its final line."""
        self.proc.stdin.close()
        final: dict = {}
        while (line := await self._read(30)) is not None:
            final = line if "final" in line else final
        await self.proc.wait()
        return final

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
