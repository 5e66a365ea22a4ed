#!/usr/bin/env python3
"""Example VPN backend: drives netcfg the way openvpn3-service-client does.

Creates a device, sets layer/MTU, adds addresses, routes and DNS, calls
Establish, receives the tun fd, prints the kernel's view of the device and
the NetworkChange events it subscribed to, then destroys the device.

    demo_client.py --address unix:path=/run/netcfg-demo/bus.sock --netns NS
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

NAME = IFACE = "net.openvpn.v3.netcfg"
MANAGER = "/net/openvpn/v3/netcfg"
PROPS = "org.freedesktop.DBus.Properties"
TYPES = {1: "DEVICE_ADDED", 2: "DEVICE_REMOVED", 4: "IPADDR_ADDED", 8: "IPADDR_REMOVED", 16: "ROUTE_ADDED",
         32: "ROUTE_REMOVED", 64: "ROUTE_EXCLUDED", 128: "DNS_SERVER_ADDED", 256: "DNS_SERVER_REMOVED",
         512: "DNS_SEARCH_ADDED", 1024: "DNS_SEARCH_REMOVED"}


async def call(bus, path, member, signature="", body=(), interface=IFACE):
    reply = await bus.call(Message(destination=NAME, path=path, interface=interface, member=member,
                                   signature=signature, body=list(body)))
    if reply.message_type is MessageType.ERROR:
        raise SystemExit(f"{member} failed: {reply.error_name}: {reply.body[0] if reply.body else ''}")
    return reply


def kernel_view(netns: str | None, ifname: str) -> None:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    for args in (["-d", "link", "show", "dev", ifname], ["addr", "show", "dev", ifname],
                 ["route", "show", "dev", ifname], ["-6", "route", "show", "dev", ifname]):
        print(f"$ ip {' '.join(args)}")
        print(subprocess.run(prefix + args, capture_output=True, text=True).stdout.rstrip())


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", required=True, help="D-Bus address of the bus netcfg serves on")
    p.add_argument("--netns", help="network namespace netcfg runs in (for the kernel view)")
    p.add_argument("--show-file", help="a file to print while the device is up (the resolv.conf netcfg manages)")
    args = p.parse_args()

    bus = await MessageBus(bus_address=args.address, negotiate_unix_fd=True).connect()
    events = []
    bus.add_message_handler(lambda m: events.append(m.body) if m.message_type is MessageType.SIGNAL
                            and m.member == "NetworkChange" else None)
    version = (await call(bus, MANAGER, "Get", "ss", [IFACE, "version"], PROPS)).body[0].value
    print(f"netcfg version: {version}")
    await call(bus, MANAGER, "NotificationSubscribe", "u", [2047])
    dev = (await call(bus, MANAGER, "CreateVirtualInterface", "s", ["demo"])).body[0]
    print(f"device object: {dev}")
    await call(bus, dev, "Set", "ssv", [IFACE, "layer", Variant("u", 3)], PROPS)
    await call(bus, dev, "Set", "ssv", [IFACE, "mtu", Variant("q", 1420)], PROPS)
    await call(bus, dev, "AddIPAddress", "susb", ["10.8.0.2", 24, "10.8.0.1", False])
    await call(bus, dev, "AddIPAddress", "susb", ["fd00:8::2", 64, "fd00:8::1", True])
    await call(bus, dev, "AddDNS", "as", [["10.8.0.1", "fd00:8::1"]])
    await call(bus, dev, "AddDNSSearch", "as", [["vpn.example"]])
    await call(bus, dev, "AddNetworks", "a(suibb)", [[
        ["192.168.100.0", 24, -1, False, False], ["172.16.0.0", 12, 50, False, False],
        ["fd00:100::", 48, -1, True, False]]])
    reply = await call(bus, dev, "Establish")
    fd = reply.unix_fds[0]
    ifname = (await call(bus, dev, "Get", "ss", [IFACE, "device_name"], PROPS)).body[0].value
    print(f"Establish: got tun fd {fd} for {ifname}\n")
    kernel_view(args.netns, ifname)
    if args.show_file:
        print(f"$ cat {args.show_file}")
        with open(args.show_file) as f:
            print(f.read().rstrip())
    await asyncio.sleep(0.2)
    await call(bus, dev, "Destroy")
    os.close(fd)
    await asyncio.sleep(0.2)
    print("\nNetworkChange events received:")
    for type_, device, details in events:
        print(f"  {TYPES.get(type_, type_):<18} {device:<6} {json.dumps(details, sort_keys=True)}")
    bus.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
