#!/usr/bin/env python3
"""A VPN client stand-in for DNS tests: configures a device through netcfg and
answers the DNS queries that arrive on its tun.

    vpnclient.py --bus ADDRESS --servers 10.8.0.1 [--domains vpn.example]
                 [--scope tunnel] --answer 198.51.100.9

Creates a device, sets layer 3 (and dns_scope), adds 10.8.0.2/24 with
gateway 10.8.0.1, the remote, the DNS servers and domains, calls Establish
and keeps the tun fd, like openvpn3's client does.  It prints one JSON line
{"ok": true, "path": ..., "device": "tunN"} (or {"ok": false, "error",
"text"}), then serves:

* systemd-resolved binds its per-link DNS sockets to the link, so a query
  for a server set on the tun leaves through the tun: this process, which
  holds the tun fd, is that server.  Every IPv4 UDP packet to port 53 of a
  --servers address is answered with one A record, --answer (dnsserver.py).
* stdin: "destroy" / "disable" call that method and print the reply as a
  JSON line; EOF ends the process (a test SIGKILLs it to play a crash).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dbus_fast import Message, MessageType, Variant  # noqa: E402
from dbus_fast.aio import MessageBus  # noqa: E402

from dnsserver import answer as dns_answer  # noqa: E402

NAME = "net.openvpn.v3.netcfg"
MANAGER = "/net/openvpn/v3/netcfg"
PROPS = "org.freedesktop.DBus.Properties"


class CallFailed(Exception):
    pass


async def call(bus, path, member, signature="", body=(), interface=NAME):
    reply = await bus.call(Message(destination=NAME, path=path, interface=interface, member=member,
                                   signature=signature, body=list(body)))
    if reply.message_type is MessageType.ERROR:
        raise CallFailed(reply.error_name, reply.body[0] if reply.body else "")
    return reply


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def reply_packet(packet: bytes, servers: set[str], address: bytes) -> bytes | None:
    """The IPv4/UDP answer to a DNS query read from the tun, or None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    src, dst = packet[12:16], packet[16:20]
    sport, dport = struct.unpack("!HH", packet[ihl:ihl + 4])
    if dport != 53 or socket.inet_ntoa(dst) not in servers:
        return None
    try:
        payload, _name, _qtype = dns_answer(packet[ihl + 8:], address)
    except (ValueError, IndexError, struct.error):
        return None
    udp = struct.pack("!HHHH", 53, sport, 8 + len(payload), 0) + payload  # checksum 0: none (IPv4)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, socket.IPPROTO_UDP, 0, dst, src)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bus", required=True)
    p.add_argument("--name", default="dnsclient")
    p.add_argument("--servers", nargs="+", required=True)
    p.add_argument("--domains", nargs="*", default=[])
    p.add_argument("--scope", default="global")
    p.add_argument("--answer", required=True)
    args = p.parse_args()

    bus = await MessageBus(bus_address=args.bus, negotiate_unix_fd=True).connect()
    try:
        path = (await call(bus, MANAGER, "CreateVirtualInterface", "s", [args.name])).body[0]
        await call(bus, path, "Set", "ssv", [NAME, "layer", Variant("u", 3)], PROPS)
        await call(bus, path, "Set", "ssv", [NAME, "dns_scope", Variant("s", args.scope)], PROPS)
        await call(bus, path, "AddIPAddress", "susb", ["10.8.0.2", 24, "10.8.0.1", False])
        await call(bus, path, "SetRemoteAddress", "sb", ["198.51.100.200", False])
        await call(bus, path, "AddDNS", "as", [args.servers])
        await call(bus, path, "AddDNSSearch", "as", [args.domains])
        reply = await call(bus, path, "Establish")
        fd = reply.unix_fds[0]
        device = (await call(bus, path, "Get", "ss", [NAME, "device_name"], PROPS)).body[0].value
    except CallFailed as e:
        print(json.dumps({"ok": False, "error": e.args[0], "text": e.args[1]}), flush=True)
        return 0
    print(json.dumps({"ok": True, "path": path, "device": device}), flush=True)

    loop = asyncio.get_running_loop()
    servers, address = set(args.servers), socket.inet_aton(args.answer)
    os.set_blocking(fd, False)

    def readable() -> None:
        while True:
            try:
                packet = os.read(fd, 65535)
            except BlockingIOError:
                return
            except OSError:  # EIO once the link is down: nothing more to answer
                loop.remove_reader(fd)
                return
            out = reply_packet(packet, servers, address)
            if out is not None:
                os.write(fd, out)

    loop.add_reader(fd, readable)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return 0
        member = {"destroy": "Destroy", "disable": "Disable"}[line.strip()]
        try:
            await call(bus, path, member)
            print(json.dumps({"ok": True}), flush=True)
        except CallFailed as e:
            print(json.dumps({"ok": False, "error": e.args[0], "text": e.args[1]}), flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
