"""Device objects /net/openvpn/v3/netcfg/<pid>_<name> (spec 1.3).

Every method and property write is for the creating process or root
(Policy.OWNER_OR_ROOT); values are validated by the core's value types as
the call arrives, so Establish only does cross-field checks.
"""

from __future__ import annotations

import asyncio

from ..errors import InvalidArgument, TeardownIncomplete
from ..kernel.address import TunnelAddress
from ..kernel.ip import parse_ip
from ..kernel.route import Network
from ..registry import DeviceRegistry, sanitise_name
from ..session import Session
from . import INTERFACE
from .dco import DcoFace
from .dispatch import Call, FdReply
from .members import LOG_SIGNAL, NETWORK_CHANGE_SIGNAL, Method, Policy, Property

OWNER, BUS = Policy.OWNER_OR_ROOT, Policy.BUS_POLICY
PARSE_SLICE = 5000  # AddNetworks entries validated between two yields to the loop


def _setter(method: str, *args):
    """A property write: one call of the session's setter (it validates)."""
    async def setter(face: "DeviceFace", value) -> None:
        await getattr(face.session, method)(*args, value)
    return setter


def _cfg(name: str):
    return lambda face: getattr(face.session.config, name)


class DeviceFace:
    interface = INTERFACE
    methods = {m.name: m for m in (
        Method("AddIPAddress", OWNER, "s:ip_address u:prefix_size s:gateway b:ipv6"),
        Method("SetRemoteAddress", OWNER, "s:ip_address b:ipv6"),
        # a(subb): clients that think we are v25 or older (spec 1.7)
        Method("AddNetworks", OWNER, "a(suibb):networks", also_accepts=("a(subb)",)),
        Method("AddDNS", OWNER, "as:server_list"),
        Method("AddDNSSearch", OWNER, "as:domains"),
        Method("SetDNSSEC", OWNER, "s:mode"),
        Method("SetDNSTransport", OWNER, "s:mode"),
        Method("EnableDCO", OWNER, "s:dev_name", "o:dco_device_path"),
        Method("Establish", OWNER, fd_out=True),
        Method("Disable", OWNER),
        Method("Destroy", OWNER),
    )}
    properties = {p.name: p for p in (
        Property("device_name", "s", BUS, lambda f: f.session.device_name),
        Property("mtu", "q", BUS, _cfg("mtu"), OWNER, _setter("set_mtu")),
        Property("layer", "u", BUS, _cfg("layer"), OWNER, _setter("set_layer")),
        Property("txqueuelen", "q", BUS, _cfg("txqueuelen"), OWNER, _setter("set_txqueuelen")),
        Property("reroute_ipv4", "b", BUS, _cfg("reroute_ipv4"), OWNER, _setter("set_reroute", False)),
        Property("reroute_ipv6", "b", BUS, _cfg("reroute_ipv6"), OWNER, _setter("set_reroute", True)),
        Property("owner", "u", BUS, lambda f: f.session.owner.uid),
        Property("acl", "au", BUS, lambda f: sorted({f.session.owner.uid, 0})),
        Property("dns_scope", "s", BUS, lambda f: f.session.dns.scope, OWNER, _setter("set_dns_scope")),
        # The original declares these `s` and sends `as` (spec 1.3): we say `as`.
        Property("dns_name_servers", "as", BUS, lambda f: list(f.session.dns.servers)),
        Property("dns_search_domains", "as", BUS, lambda f: list(f.session.dns.domains)),
        Property("dnssec_mode", "s", BUS, lambda f: f.session.dns.dnssec),
    )}
    signals = (LOG_SIGNAL, NETWORK_CHANGE_SIGNAL)

    def __init__(self, session: Session, registry: DeviceRegistry, log_level: int, export) -> None:
        self.session = session
        self.registry = registry
        self.path = session.path
        self.log_level = log_level
        self.export = export  # puts a child object (/dco) on the bus; it goes with the device

    def owner(self):
        return self.session.owner

    async def AddIPAddress(self, call: Call, ip_address: str, prefix_size: int, gateway: str, ipv6: bool):
        await self.session.add_address(TunnelAddress.from_wire(ip_address, prefix_size, gateway, ipv6))

    async def SetRemoteAddress(self, call: Call, ip_address: str, ipv6: bool):
        await self.session.set_remote(str(parse_ip(ip_address, ipv6, "remote address")))

    async def AddNetworks(self, call: Call, networks: list):
        # Parsing costs ~30 us per entry: a 1,000,000-entry call would hold
        # the loop for half a minute before the bound refused it.
        self.session.check_room_for_networks(len(networks))
        parsed = []
        for i, entry in enumerate(networks):
            if i and not i % PARSE_SLICE:
                await asyncio.sleep(0)  # let other clients' calls in during a long parse
            if len(entry) == 4:  # a(subb): no metric
                entry = [entry[0], entry[1], -1, entry[2], entry[3]]
            try:
                parsed.append(Network.from_wire(*entry))
            except InvalidArgument as e:
                raise InvalidArgument(f"networks[{i}]: {e}") from None
        await self.session.add_networks(parsed)

    async def AddDNS(self, call: Call, server_list: list):
        await self.session.add_dns_servers(server_list)

    async def AddDNSSearch(self, call: Call, domains: list):
        await self.session.add_dns_domains(domains)

    async def SetDNSSEC(self, call: Call, mode: str):
        await self.session.set_dnssec(mode)

    async def SetDNSTransport(self, call: Call, mode: str):
        await self.session.set_dns_transport(mode)

    async def EnableDCO(self, call: Call, dev_name: str):
        await self.session.enable_dco(sanitise_name(dev_name))
        self.export(DcoFace(self.session))
        return [self.session.dco_path]

    async def Establish(self, call: Call):
        fd = await self.session.establish()
        return FdReply([], fd) if fd is not None else None  # a DCO device has no fd to give

    async def Disable(self, call: Call):
        await self.session.disable()

    async def Destroy(self, call: Call):
        errors = await self.registry.destroy(self.session, f"Destroy() by uid {call.caller.uid}")
        if errors:
            raise TeardownIncomplete(errors)
