"""`netcfgctl watch`: live NetworkChange events, one line each, until Ctrl-C.

Subscribes with NotificationSubscribe (as root: the policy lets root and
openvpn subscribe); the service then sends each event to this connection
alone (a unicast signal).  On Ctrl-C or SIGTERM it unsubscribes before
leaving; were it killed, the service ends the subscription when the
connection leaves the bus.  If netcfg leaves the bus, watch says so and
exits with code 3.
"""

from __future__ import annotations

import asyncio
import datetime
import sys

from dbus_fast import MessageType

from ...events import ALL_TYPES, ChangeType
from ..bus import BUS_NAME, INTERFACE, plain
from ..errors import UNREACHABLE, USAGE, CtlError

NAME = "watch"
HELP = "print NetworkChange events as they happen (--type, --device to filter) until Ctrl-C (root)"
READS = True
GROUPS = {"device": ("DEVICE_",), "address": ("IPADDR_",), "ipaddr": ("IPADDR_",), "route": ("ROUTE_",),
          "dns": ("DNS_",)}


def add_arguments(parser) -> None:
    parser.add_argument("--type", action="append", metavar="TYPE", default=[],
                        help="only these event types (repeat or comma-separate): DEVICE_ADDED ... "
                             "DNS_SEARCH_REMOVED, any case, '-' for '_', or a group: device, address, route, dns")
    parser.add_argument("--device", action="append", metavar="DEVICE", default=[],
                        help="only events of this device: kernel name, device path, or its last element")


def mask_of(words: list[str]) -> int:
    mask = 0
    for word in (w.strip() for item in words for w in item.split(",") if w.strip()):
        key = word.upper().replace("-", "_")
        prefixes = GROUPS.get(word.lower())
        if prefixes:
            mask |= sum(t for t in ChangeType if t.name.startswith(prefixes))
        elif key in ChangeType.__members__:
            mask |= ChangeType[key]
        else:
            raise CtlError(USAGE, f"unknown event type '{word}' (see netcfgctl watch --help)")
    return mask or ALL_TYPES


def event_text(e: dict) -> str:
    d = e["details"]
    if "ip_address" in d:
        what = f"{d['ip_address']}/{d.get('prefix_size', d.get('prefix'))}"
    elif "subnet" in d:
        what = f"{d['subnet']}/{d.get('prefix_size', d.get('prefix'))}"
        what += f" via {d['gateway']}" if d.get("gateway") else ""
    else:
        what = d.get("dns_server") or d.get("search_domain") or ""
    if d.get("origin") == "external":
        what += " (by someone else)"
    return what


class Watcher:
    def __init__(self, out, devices: list[str]) -> None:
        self.out, self.devices = out, devices
        self.gone = asyncio.Event()

    def wanted(self, device: str, path: str) -> bool:
        return not self.devices or any(d in (device, path, path.rsplit("/", 1)[-1]) for d in self.devices)

    def on_message(self, msg) -> None:
        if msg.message_type is not MessageType.SIGNAL:
            return
        if msg.member == "NameOwnerChanged" and msg.body[:1] == [BUS_NAME] and not msg.body[2]:
            self.gone.set()
            return
        if msg.interface != INTERFACE or msg.member != "NetworkChange" or msg.signature != "usa{ss}":
            return
        type_, device, details = plain(msg.body)
        if not self.wanted(device, msg.path or ""):
            return
        now = datetime.datetime.now().astimezone()
        try:
            name = ChangeType(type_).name
        except ValueError:
            name = str(type_)
        event = {"time": now.isoformat(timespec="milliseconds"), "type": name, "type_value": type_,
                 "device": device, "path": msg.path, "details": details}
        if self.out.json_mode:
            self.out.json_line(event)
        else:
            stamp = now.strftime("%H:%M:%S.") + f"{now.microsecond // 1000:03d}"
            self.out.wrapped(f"{stamp}  {device or '-'}  ", f"{name}  {event_text(event)}".rstrip())


async def run(args, ctx) -> int:
    mask = mask_of(args.type)
    client = await ctx.client()
    watcher = Watcher(ctx.out, args.device)
    client.bus.add_message_handler(watcher.on_message)
    rule = (f"type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{BUS_NAME}'")
    await client.bus_daemon("AddMatch", "s", [rule])
    await client.call("NotificationSubscribe", "u", [mask])
    print(f"netcfgctl: watching NetworkChange events as {client.unique_name} (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    try:
        await watcher.gone.wait()
    except asyncio.CancelledError:
        asyncio.current_task().uncancel()  # so the unsubscribe below may still wait for its reply
        return 0  # Ctrl-C: the normal end (the `finally` unsubscribes)
    finally:
        if not watcher.gone.is_set():
            try:
                await client.call("NotificationUnsubscribe", "s", [client.unique_name])
            except CtlError:
                pass  # gone meanwhile: the service ends it with our connection anyway
    raise CtlError(UNREACHABLE, f"{BUS_NAME} left the bus")
