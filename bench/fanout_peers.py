"""The other processes of bench/fanout.py: a subscriber and a call prober.

    fanout_peers.py subscriber --address A --expect N [--mask M] [--kind handler|proxy --path P] [--match]
    fanout_peers.py prober --address A [--interval 0.005]

Each prints JSON lines on stdout and ends at EOF on stdin (the bench closes
it).  Times are time.monotonic() (CLOCK_MONOTONIC), comparable between
processes of one machine.

subscriber: subscribes, prints {"ready": unique_name}, counts NetworkChange
signals, seen either by a message handler (--kind handler: every
NetworkChange, whatever the device path; what a client watching all
devices writes with dbus-fast) or by a proxy interface's
on_network_change (--kind proxy: the device at --path only; dbus-fast
adds a match rule, checks the sender and unpacks the body); prints {"done": ..} when N have arrived and {"final": ..} at EOF
(a count above N there means duplicates).  --match adds a match rule on
interface and member to a handler: the broadcast floor's signals (no
destination) reach only subscribers with one.
prober: calls Get(version) on the manager every --interval seconds and, at
EOF, prints [[start, latency], ...] for every call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

NAME = IFACE = "net.openvpn.v3.netcfg"
MANAGER = "/net/openvpn/v3/netcfg"


def say(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def stdin_closed() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(fd)
            done.set()

    loop.add_reader(fd, readable)
    return done


INTROSPECTION = f"""<node><interface name="{IFACE}">
<signal name="NetworkChange"><arg type="u"/><arg type="s"/><arg type="a{{ss}}"/></signal>
</interface></node>"""


async def subscriber(address: str, expect: int, mask: int, kind: str, path: str, match: bool) -> None:
    bus = await MessageBus(bus_address=address).connect()
    state = {"count": 0, "first": None, "last": None, "done": False}

    def got() -> None:
        now = time.monotonic()
        state["count"] += 1
        state["first"] = state["first"] or now
        state["last"] = now
        if state["count"] == expect and not state["done"]:
            state["done"] = True
            say({"done": state["count"], "first": state["first"], "last": now})

    if kind == "proxy":
        # What a typical dbus-fast client writes: a proxy interface and its
        # on_<signal> callback (a match rule on sender, interface, member;
        # the library checks the sender and unpacks the body for us).
        from dbus_fast.introspection import Node

        proxy = bus.get_proxy_object(NAME, path, Node.parse(INTROSPECTION))
        proxy.get_interface(IFACE).on_network_change(lambda type_, device, details: got())
    else:
        def on_message(msg: Message):
            if msg.message_type is MessageType.SIGNAL and msg.member == "NetworkChange":
                got()
            return None

        bus.add_message_handler(on_message)
        if match:
            await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                   interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                                   body=[f"type='signal',interface='{IFACE}',member='NetworkChange'"]))
    reply = await bus.call(Message(destination=NAME, path=MANAGER, interface=IFACE,
                                   member="NotificationSubscribe", signature="u", body=[mask]))
    if reply.message_type is not MessageType.METHOD_RETURN:
        say({"error": f"{reply.error_name}: {reply.body}"})
        return
    closed = stdin_closed()
    say({"ready": bus.unique_name})
    await closed.wait()
    say({"final": state["count"], "first": state["first"], "last": state["last"]})
    bus.disconnect()


async def prober(address: str, interval: float) -> None:
    bus = await MessageBus(bus_address=address).connect()
    closed = stdin_closed()
    samples = []
    say({"ready": bus.unique_name})
    while not closed.is_set():
        start = time.monotonic()
        reply = await bus.call(Message(destination=NAME, path=MANAGER, interface="org.freedesktop.DBus.Properties",
                                       member="Get", signature="ss", body=[IFACE, "version"]))
        if reply.message_type is not MessageType.METHOD_RETURN:
            say({"error": f"{reply.error_name}: {reply.body}"})
            return
        samples.append([start, time.monotonic() - start])
        await asyncio.sleep(interval)
    say({"samples": samples})
    bus.disconnect()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=("subscriber", "prober"))
    p.add_argument("--address", required=True)
    p.add_argument("--expect", type=int, default=0)
    p.add_argument("--mask", type=int, default=21)  # DEVICE_ADDED|IPADDR_ADDED|ROUTE_ADDED
    p.add_argument("--interval", type=float, default=0.005)
    p.add_argument("--kind", choices=("handler", "proxy"), default="handler")
    p.add_argument("--path", help="the device's object path (--kind proxy)")
    p.add_argument("--match", action="store_true", help="--kind handler: add a match rule (broadcast signals)")
    a = p.parse_args()
    if a.role == "subscriber":
        asyncio.run(subscriber(a.address, a.expect, a.mask, a.kind, a.path, a.match))
    else:
        asyncio.run(prober(a.address, a.interval))


if __name__ == "__main__":
    main()
