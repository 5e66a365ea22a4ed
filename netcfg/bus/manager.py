"""The manager object /net/openvpn/v3/netcfg (spec 1.2).

A thin face: convert wire values, call the registry, return.  Policies per
member are declared with the member.
"""

from __future__ import annotations

import logging

from .. import VERSION_STRING
from ..errors import InvalidProperty, NotAuthorized
from ..kernel.ip import parse_ip
from ..registry import MANAGER_PATH, DeviceRegistry
from . import INTERFACE
from .dispatch import Call
from .members import LOG_SIGNAL, NETWORK_CHANGE_SIGNAL, Method, Policy, Property
from .signals import Subscriptions

log = logging.getLogger(__name__)
BUS, ROOT = Policy.BUS_POLICY, Policy.ROOT_ONLY  # BUS: the policy file decides


async def _set_log_level(face: "ManagerFace", value: int) -> None:
    # The original aborts on a value > 6 (spec 2.2 [quirk]); we refuse it.
    if not 0 <= value <= 6:
        raise InvalidProperty(f"Invalid log level {value}: must be 0-6")
    face.log_level = value
    face.on_log_level(value)


class ManagerFace:
    interface = INTERFACE
    path = MANAGER_PATH
    methods = {m.name: m for m in (
        Method("CreateVirtualInterface", BUS, "s:device_name", "o:device_path"),
        Method("FetchInterfaceList", BUS, "", "ao:device_paths"),
        Method("ProtectSocket", BUS, "s:remote b:ipv6 o:device_path", "b:succeeded", fd_in=True),
        Method("DcoAvailable", BUS, "", "b:available"),
        Method("Cleanup", BUS),
        Method("NotificationSubscribe", BUS, "u:filter"),
        Method("NotificationUnsubscribe", BUS, "s:subscriber"),
        Method("NotificationSubscriberList", ROOT, "", "a(su):subscriptions"),
    )}
    properties = {p.name: p for p in (
        Property("global_dns_servers", "as", BUS, lambda f: f.registry.ctx.dns.aggregate("servers")),
        Property("global_dns_search", "as", BUS, lambda f: f.registry.ctx.dns.aggregate("domains")),
        Property("log_level", "u", BUS, lambda f: f.log_level, BUS, _set_log_level),
        Property("config_file", "s", BUS, lambda f: f.config_file),
        Property("version", "s", BUS, lambda f: VERSION_STRING),
    )}
    signals = (LOG_SIGNAL, NETWORK_CHANGE_SIGNAL)

    def __init__(self, registry: DeviceRegistry, subscriptions: Subscriptions, export_device,
                 log_level: int, config_file: str, dco_available) -> None:
        self.registry = registry
        self.subscriptions = subscriptions
        self.export_device = export_device
        self.log_level = log_level
        self.config_file = config_file
        self.dco_available = dco_available
        self.on_log_level = lambda level: None

    def owner(self):
        return None

    async def CreateVirtualInterface(self, call: Call, device_name: str):
        session = self.registry.create(device_name, call.caller.as_owner())
        self.export_device(session, self.log_level)
        return [session.path]

    async def FetchInterfaceList(self, call: Call):
        sessions = self.registry.accessible_to(call.caller.uid, call.caller.pid)
        return [[path for s in sessions for path in s.object_paths()]]  # devices and their /dco (spec 1.2)

    async def ProtectSocket(self, call: Call, remote: str, ipv6: bool, device_path: str):
        ip = parse_ip(remote, ipv6, "remote")
        device = device_path if device_path in self.registry.sessions else None
        if device is not None:
            session = self.registry.get(device)
            if not call.caller.is_root and session.owner.pid != call.caller.pid:
                raise NotAuthorized(f"ProtectSocket: {device_path} belongs to another process")
        log.info("Socket protect called for socket %s, remote: '%s', ipv6: %s, device_path=%s, device-object: %s",
                 call.fd if call.fd is not None else -1, remote, "yes" if ipv6 else "no", device_path,
                 "valid" if device else "missing")
        ok = await self.registry.protect_socket(call.caller.as_owner(), str(ip), ipv6, call.fd, device)
        return [ok]

    async def DcoAvailable(self, call: Call):
        return [await self.dco_available()]

    async def Cleanup(self, call: Call):
        await self.registry.cleanup_pid(call.caller.pid)

    async def NotificationSubscribe(self, call: Call, filter: int):
        self.subscriptions.subscribe(call.caller.bus_name, call.caller.uid, filter)

    async def NotificationUnsubscribe(self, call: Call, subscriber: str):
        self.subscriptions.unsubscribe(call.caller.bus_name, call.caller.is_root, subscriber)

    async def NotificationSubscriberList(self, call: Call):
        return [self.subscriptions.listing()]
