#!/usr/bin/env python3
"""D-Bus client runner: executes JSON-described calls, prints JSON results.

The program the tests run as another UID (``client_launch.run_client`` /
``arun_client``), from a world-readable copy of this file and its two
siblings (``client_runner_steps.py``: what each step does;
``client_runner_values.py``: value encoding, fds); see ``client_runtime.py``.
It needs only the standard library and ``dbus_fast``, and imports nothing
from the test suite.  This module is the process side: input, output, hold,
exit code.

    python client_runner.py --address unix:path=/tmp/.../bus.sock

Input: the FIRST LINE of stdin is a JSON list of steps (or an object
``{"steps": [...]}``).  Output: one JSON line per step, flushed at once::

    {"ok": true, "body": [...], "fds": N, "fd_targets": ["/dev/net/tun"]}
    {"ok": false, "error": "org.freedesktop.DBus.Error.AccessDenied", "text": "..."}

The step kinds are in ``client_runner_steps.py``, the value encoding in
``client_runner_values.py``.  One more step, handled here:

* ``{"hold": true}`` -- must be last: print ``{"ok": true, "held": true}``
  and keep the connection (and all fds) open until stdin reaches EOF or the
  process gets SIGTERM/SIGINT; then exit 0.

Exit code 0 after all steps whatever their results, 2 for bad input or when
the bus connection fails (reported as an error line first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from dbus_fast.aio import MessageBus

if __package__:  # imported as part of the tests' ``support`` package
    from .client_runner_steps import Runner
    from .client_runner_values import StepError
else:  # the runner process: its siblings are top-level modules next to it
    from client_runner_steps import Runner
    from client_runner_values import StepError


def emit(obj: dict) -> None:
    out = {k: v for k, v in obj.items() if not k.startswith("_")}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def start_hold() -> asyncio.Event:
    """An event set at EOF on stdin or on SIGTERM/SIGINT.  Installed BEFORE
    the "held" line is printed, so a signal right after it is handled."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            done.set()

    try:
        os.set_blocking(fd, False)
        loop.add_reader(fd, readable)
    except (OSError, ValueError):
        pass  # stdin is not pollable (a file): wait for a signal only
    return done


async def amain(address: str, steps: list[dict]) -> int:
    try:
        bus = await asyncio.wait_for(
            MessageBus(bus_address=address, negotiate_unix_fd=True).connect(), 10
        )
    except Exception as e:
        emit({"ok": False, "error": "client.ConnectFailed", "text": f"{type(e).__name__}: {e}"})
        return 2
    runner = Runner(bus, address)
    try:
        for i, st in enumerate(steps):
            if st.get("hold"):
                if i != len(steps) - 1:
                    emit({"ok": False, "error": "client.BadStep", "text": "hold must be last"})
                    return 2
                done = start_hold()
                emit({"ok": True, "held": True})
                await done.wait()
                break
            try:
                res = await runner.step(st)
            except StepError as e:
                res = {"ok": False, "error": e.name, "text": e.text}
            runner.results.append(res)
            emit(res)
    finally:
        for b in runner.buses:
            b.disconnect()
        for b in runner.buses:
            try:
                await asyncio.wait_for(b.wait_for_disconnect(), 5)
            except Exception:
                pass
        runner.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--address", required=True, help="D-Bus address, unix:path=...")
    args = p.parse_args(argv)
    line = sys.stdin.readline()
    try:
        steps = json.loads(line)
        if isinstance(steps, dict):
            steps = steps["steps"]
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise ValueError("steps must be a list of objects")
    except (ValueError, KeyError) as e:
        emit({"ok": False, "error": "client.BadInput", "text": str(e)})
        return 2
    return asyncio.run(amain(args.address, steps))


if __name__ == "__main__":
    sys.exit(main())
