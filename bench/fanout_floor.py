#!/usr/bin/env python3
"""The floor under bench/fanout.py: a bare emitter, no netcfg, no routes.

    .venv/bin/python bench/fanout_floor.py [--signals 10000] [--subscribers 10]
        [--mode broadcast,unicast-message,unicast-raw] [--subscriber proxy,handler]
        [--sndbuf 0] [--repeat 3]

As root (system-type private bus with our policy, tests/support).  Re-does
the measurement of shared/notes/dependencies.md 1.4 and its unicast
variants, so that the two can be compared on the same machine and moment:

* broadcast: the emitter sends each NetworkChange once, without a
  destination (what the notes measured: a dbus-fast ServiceInterface
  signal); the daemon copies it to the 10 subscribers' match rules.
* unicast-message: one dbus_fast Message per (event, subscriber), sent with
  bus.send (destination set, what netcfg must do: spec 8, issue 4).
* unicast-raw: the same bytes as unicast-message, but built the way
  netcfg/bus/pump.py builds them (body marshalled once, header template,
  serial/length patched) and written in 64 KiB chunks.

Subscribers: "proxy" (a dbus-fast proxy interface, on_network_change, as
in the notes: a match rule on sender, path, interface, member), "handler"
(bus.add_message_handler plus a match rule on interface and member) or
"handler-nomatch" (the handler alone, as bench/fanout_peers.py: unicast
signals need no match rule; broadcast ones then reach no one).

Reported per run: emit loop seconds, first-emit -> last delivery at the
slowest subscriber, deliveries/s, and the CPU seconds of the emitter, the
dbus-daemon and all subscribers over that interval.  With --sndbuf N the
emitter sets SO_SNDBUFFORCE N (0: leave the default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

NAME = IFACE = "net.openvpn.v3.netcfg"
PATH = "/net/openvpn/v3/netcfg/dev1"
SIGNATURE = "usa{ss}"
INTROSPECTION = f"""<node><interface name="{IFACE}">
<signal name="NetworkChange"><arg type="u"/><arg type="s"/><arg type="a{{ss}}"/></signal>
</interface></node>"""


def body(i: int) -> list:
    """A ROUTE_ADDED event as netcfg sends it (6 details)."""
    a = f"100.64.{(i >> 8) & 255}.{i & 255}"
    return [16, "tun0", {"ip_version": "4", "subnet": a, "prefix": "32", "prefix_size": "32",
                         "gateway": "10.8.0.1", "origin": "netcfg"}]


def say(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, every process)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


def switches(pid: int) -> int:
    """Voluntary context switches so far (~ times the process went to sleep waiting)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    return 0


# -- roles (child processes) ----------------------------------------------

async def role_subscriber(address: str, expect: int, kind: str) -> None:
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=address).connect()
    state = {"n": 0, "first": None}

    def got() -> None:
        now = time.monotonic()
        state["n"] += 1
        if state["first"] is None:
            state["first"] = now
        if state["n"] == expect:
            say({"done": expect, "first": state["first"], "last": now})

    if kind == "proxy":
        from dbus_fast.introspection import Node

        proxy = bus.get_proxy_object(NAME, PATH, Node.parse(INTROSPECTION))
        iface = proxy.get_interface(IFACE)
        iface.on_network_change(lambda kind, device, details: got())  # adds the match rule
        await asyncio.sleep(0.2)  # the AddMatch call is fire-and-forget
    else:
        def on_message(msg):
            if msg.message_type is MessageType.SIGNAL and msg.member == "NetworkChange":
                got()

        bus.add_message_handler(on_message)
        if kind == "handler-nomatch":  # unicast needs no match rule (broadcast then reaches no one)
            say({"ready": bus.unique_name})
            await bus.wait_for_disconnect()
            return
        await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                               interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                               body=[f"type='signal',interface='{IFACE}',member='NetworkChange'"]))
    say({"ready": bus.unique_name})
    await bus.wait_for_disconnect()


async def role_emitter(address: str, count: int, mode: str, sndbuf: int, pump_opts: dict) -> None:
    from dbus_fast import Message, MessageType
    from dbus_fast._private.marshaller import Marshaller
    from dbus_fast.aio import MessageBus

    from netcfg.bus.connection import patch_writer, send_raw
    from netcfg.bus.pump import Outgoing, header_template

    patch_writer()  # EAGAIN = wait (notes 1.6.1); without it every variant dies
    bus = await MessageBus(bus_address=address).connect()
    if sndbuf:
        bus._sock.setsockopt(socket.SOL_SOCKET, 32, sndbuf)  # SO_SNDBUFFORCE
    await bus.request_name(NAME)
    say({"ready": bus.unique_name, "sndbuf": bus._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)})
    names = json.loads(sys.stdin.readline())  # "go": the subscribers' unique names
    bodies = [body(i) for i in range(count)]
    t0 = time.monotonic()
    if mode == "broadcast":
        for b in bodies:
            bus.send(Message.new_signal(PATH, IFACE, "NetworkChange", SIGNATURE, b))
    elif mode == "unicast-message":
        for b in bodies:
            for name in names:
                bus.send(Message(message_type=MessageType.SIGNAL, destination=name, path=PATH,
                                 interface=IFACE, member="NetworkChange", signature=SIGNATURE, body=b))
    elif mode == "pump":
        import netcfg.bus.pump as pump_mod

        for key, value in pump_opts.items():
            setattr(pump_mod, key, value)
        pump = pump_mod.SignalPump(bus)
        pump.start()
        for b in bodies:
            pump.push(names, PATH, IFACE, "NetworkChange", SIGNATURE, b)
        await pump.flush(60)
    else:
        headers = {n: header_template(n, Outgoing(PATH, IFACE, "NetworkChange", SIGNATURE, bodies[0], []))
                   for n in names}
        chunk = bytearray()
        for b in bodies:
            raw = bytes(Marshaller(SIGNATURE, b).marshall())
            for name in names:
                start = len(chunk)
                chunk += headers[name]
                chunk[start + 4:start + 12] = len(raw).to_bytes(4, "little") + bus.next_serial().to_bytes(4, "little")
                chunk += raw
            if len(chunk) >= 65536:
                await send_raw(bus, chunk)
                chunk = bytearray()
        if chunk:
            await send_raw(bus, chunk)
    t_loop = time.monotonic()
    # wait until the library has written everything
    while bus._writer.messages or bus._writer.buf is not None:
        await asyncio.sleep(0.001)
    say({"t0": t0, "loop_s": t_loop - t0, "written_s": time.monotonic() - t0})
    await bus.wait_for_disconnect()


# -- the bench ----------------------------------------------------------------

def subprocess_run(argv: list[str]) -> None:
    import subprocess

    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def daemon_instructions(directory: str, pid: int) -> int:
    """Dump callgrind's counters (zeroed before the run): instructions since."""
    import glob

    before = set(glob.glob(f"{directory}/callgrind.out.{pid}*"))
    subprocess_run(["callgrind_control", "-d", str(pid)])
    dump = max(set(glob.glob(f"{directory}/callgrind.out.{pid}*")) - before, key=os.path.getmtime)
    with open(dump) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


async def start(*args: str):
    proc = await asyncio.create_subprocess_exec(sys.executable, __file__, *args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
    return proc, ready


async def one(address: str, daemon_pid: int, a, mode: str, kind: str) -> dict:
    emitter, info = await start("emitter", "--address", address, "--signals", str(a.signals), "--mode", mode,
                                "--sndbuf", str(a.sndbuf), "--pump", a.pump)
    subs = [await start("subscriber", "--address", address, "--signals", str(a.signals), "--kind", kind)
            for _ in range(a.subscribers)]
    names = [r["ready"] for _, r in subs]
    await asyncio.sleep(0.3)
    pids = {"emitter": [emitter.pid], "daemon": [daemon_pid], "subscribers": [p.pid for p, _ in subs]}
    cpu0 = {k: sum(map(cpu_seconds, v)) for k, v in pids.items()}
    sw0 = {k: sum(map(switches, v)) for k, v in pids.items()}
    machine0 = machine_seconds()
    perf = None
    if a.perf:
        import subprocess

        os.makedirs(a.perf, exist_ok=True)
        perf = subprocess.Popen(["perf", "record", "-q", "-F", "4000", "-g", "-p", str(daemon_pid), "-o",
                                 os.path.join(a.perf, f"daemon-{mode}-{kind}.data")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(0.5)
    if a.callgrind:
        subprocess_run(["callgrind_control", "-z", str(daemon_pid)])
    emitter.stdin.write((json.dumps(names) + "\n").encode())
    await emitter.stdin.drain()
    done = [json.loads(await asyncio.wait_for(p.stdout.readline(), 600 if a.callgrind else 60)) for p, _ in subs]
    instructions = daemon_instructions(a.callgrind, daemon_pid) if a.callgrind else None
    cpu = {k: sum(map(cpu_seconds, v)) - cpu0[k] for k, v in pids.items()}
    sw = {k: sum(map(switches, v)) - sw0[k] for k, v in pids.items()}
    foreign = machine_seconds() - machine0 - sum(cpu.values())
    if perf:
        perf.send_signal(2)
        perf.wait()
    emitted = json.loads(await asyncio.wait_for(emitter.stdout.readline(), 30))
    for p in [emitter] + [p for p, _ in subs]:
        p.kill()
        await p.wait()
    total = max(d["last"] for d in done) - emitted["t0"]
    deliveries = a.signals * a.subscribers
    return {"mode": mode, "subscriber": kind, "signals": a.signals, "subscribers": a.subscribers,
            "sndbuf": info["sndbuf"], "loop_s": round(emitted["loop_s"], 3),
            "written_s": round(emitted["written_s"], 3), "total_s": round(total, 3),
            "deliveries_per_s": round(deliveries / total),
            **{f"cpu_{k}_s": round(v, 2) for k, v in cpu.items()},
            "daemon_us_per_delivery": round(cpu["daemon"] / deliveries * 1e6, 2),
            "subscriber_us_per_delivery": round(cpu["subscribers"] / deliveries * 1e6, 2),
            "cpu_foreign_s": round(foreign, 2),  # other people's processes (the machine is shared)
            **({"daemon_instructions_per_delivery": round(instructions / deliveries)} if instructions else {}),
            "daemon_sleeps": sw["daemon"], "deliveries_per_subscriber_wakeup": round(deliveries / max(sw["subscribers"], 1), 1)}


async def bench(a) -> None:
    from support.busdaemon import BusDaemon
    from support.users import ensure_users

    ensure_users()
    if a.callgrind:
        # The daemon under valgrind's callgrind: instructions it executes per
        # delivery, a count the machine's other load cannot change (CPU time
        # on this shared VM varies by up to 50% from one minute to the next).
        import support.busdaemon as busdaemon

        os.makedirs(a.callgrind, exist_ok=True)
        wrapper = os.path.join(a.callgrind, "dbus-daemon")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec valgrind -q --tool=callgrind --callgrind-out-file={a.callgrind}/callgrind.out.%p "
                    f"dbus-daemon \"$@\"\n")
        os.chmod(wrapper, 0o755)
        busdaemon.DBUS_DAEMON = wrapper
    bus = BusDaemon().start(timeout=60)
    try:
        for rep in range(a.repeat):
            for mode in a.mode.split(","):
                for kind in a.subscriber.split(","):
                    r = await one(bus.address, bus.proc.pid, a, mode, kind)
                    r["load1"] = round(os.getloadavg()[0], 2)
                    print(json.dumps(r) if a.json else " ".join(f"{k}={v}" for k, v in r.items()), flush=True)
    finally:
        bus.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("role", nargs="?", choices=("emitter", "subscriber"))
    p.add_argument("--address")
    p.add_argument("--signals", type=int, default=10000)
    p.add_argument("--subscribers", type=int, default=10)
    p.add_argument("--mode", default="broadcast,unicast-message,unicast-raw,pump")
    p.add_argument("--subscriber", default="proxy,handler")
    p.add_argument("--kind", default="handler")
    p.add_argument("--sndbuf", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--pump", default="", help="pump module constants for mode pump: CHUNK_BYTES=..,WINDOW_MESSAGES=..")
    p.add_argument("--callgrind", metavar="DIR", help="run the dbus-daemon under valgrind --tool=callgrind and "
                   "report the instructions it executes per delivery (slow: use --signals 2000)")
    p.add_argument("--perf", metavar="DIR", help="perf record the dbus-daemon during each run (DIR/daemon-MODE-KIND.data)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.role == "subscriber":
        asyncio.run(role_subscriber(a.address, a.signals, a.kind))
    elif a.role == "emitter":
        opts = dict(kv.split("=") for kv in a.pump.split(",") if kv)
        asyncio.run(role_emitter(a.address, a.signals, a.mode, a.sndbuf, {k: int(v) for k, v in opts.items()}))
    else:
        if os.geteuid() != 0:
            p.error("run as root (system-type bus with our policy)")
        asyncio.run(bench(a))


if __name__ == "__main__":
    main()
