"""One virtual device: what its client asked for, and what it put in the kernel.

A Session holds the desired configuration (validated value types, filled by
the device's methods) and, once established, the ledger of kernel objects.
Establish is a transaction: on any failure everything this call created is
undone in reverse and the caller gets the reason.  Disable, Destroy, the
client vanishing and shutdown all end in `teardown`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from . import exclude
from .dco.channel import DcoChannel
from .errors import InvalidArgument, StateError
from .events import Change, ChangeType, address_details, route_details
from .kernel import link, tun
from .kernel.address import AddressOnLink, TunnelAddress
from .kernel.ledger import Ledger
from .kernel.link import TunLink
from .kernel.route import DEF1_V4, DEF1_V6, Network, Route

if TYPE_CHECKING:
    from .registry import Context

log = logging.getLogger(__name__)

MAX_ADDRESSES = 64
MAX_NETWORKS = 100_000  # per device; documented in docs/api.md
# Route events queued between two yields to the loop: queueing one costs
# ~5 us with 10 subscribers, so 10,000 routes held the loop for ~50 ms (and
# 100,000 for ~0.5 s) while other clients' calls waited.  The session lock
# is held meanwhile, so no other event of this device (foreign.py's
# included) can come between them.
EMIT_SLICE = 500


class State(Enum):
    NEW = "new"
    ESTABLISHED = "established"
    DISABLED = "disabled"
    DESTROYED = "destroyed"


@dataclass(frozen=True, slots=True)
class Owner:
    """Who created a device: the caller's UID, PID and unique bus name."""

    uid: int
    pid: int
    bus_name: str


@dataclass
class DeviceConfig:
    mtu: int = 1500
    layer: int = 0
    txqueuelen: int = 0
    reroute_ipv4: bool = False
    reroute_ipv6: bool = False
    remote: str | None = None
    addresses: list[TunnelAddress] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)


class Session:
    def __init__(self, ctx: "Context", path: str, name: str, owner: Owner) -> None:
        self.ctx, self.path, self.owner = ctx, path, owner
        self.device_name = name
        self.key = path.rsplit("/", 1)[-1]
        self.log_extra = {"netcfg_path": path}  # Log signals come from the device's path (spec 9)
        self.config = DeviceConfig()
        self.state = State.NEW
        self.ledger: Ledger | None = None
        self.link: TunLink | None = None
        self.dco: DcoChannel | None = None  # EnableDCO: the device is a DCO link, not a tun
        self.dns = ctx.dns.new_settings()
        self.lock = asyncio.Lock()  # one change at a time per device

    # -- desired configuration (validated by the value types' from_wire) --

    def add_address(self, address: TunnelAddress) -> None:
        if len(self.config.addresses) >= MAX_ADDRESSES:
            raise InvalidArgument(f"too many IP addresses (at most {MAX_ADDRESSES} per device)")
        self.config.addresses.append(address)

    def check_room_for_networks(self, count: int) -> None:
        """Refuse a batch over the bound before anyone parses it."""
        if len(self.config.networks) + count > MAX_NETWORKS:
            raise InvalidArgument(
                f"too many networks: {len(self.config.networks)} stored + {count} new "
                f"(at most {MAX_NETWORKS} per device)"
            )

    def add_networks(self, networks: list[Network]) -> None:
        self.check_room_for_networks(len(networks))
        self.config.networks.extend(networks)

    @property
    def dco_path(self) -> str:
        return self.path + "/dco"

    def object_paths(self) -> list[str]:
        return [self.path, self.dco_path] if self.dco is not None else [self.path]

    def dco_channel(self) -> DcoChannel:
        if self.dco is None or self.state is State.DESTROYED:
            raise StateError("the DCO device is gone")
        return self.dco

    def gateway(self, ipv6: bool) -> str:
        """The VPN gateway of the last address of that family (spec 8)."""
        for address in reversed(self.config.addresses):
            if address.ipv6 == ipv6:
                return address.gateway
        return ""

    # -- EnableDCO --

    async def enable_dco(self, ifname: str) -> None:
        """Make this device a DCO link named `ifname` (spec 11).  Before
        Establish, and once: the link is what Establish will configure."""
        async with self.lock:
            if self.state is State.DESTROYED:
                raise StateError("device was destroyed")
            if self.dco is not None:
                raise StateError(f"EnableDCO: DCO is enabled already, as {self.dco.link.ifname}")
            if self.ledger is not None:
                raise StateError(f"EnableDCO: the device is established already, as tun {self.device_name}")
            self.dco = await DcoChannel.create(self.ctx.nl, self.ctx.journal, self.key, ifname)
            self.device_name = ifname

    # -- Establish --

    def _check_ready(self) -> None:
        if self.state is State.DESTROYED:
            raise StateError("device was destroyed")
        if self.dco is not None:
            if self.config.layer == 2:
                raise InvalidArgument("layer 2 (tap) is not possible with DCO: its devices are layer 3")
            return
        if self.config.layer not in (2, 3):
            raise InvalidArgument("layer is not set: set the 'layer' property to 3 (tun) or 2 (tap) before Establish")

    def _redirects(self) -> bool:
        # `none` adds no def1 routes (spec 5.3): nothing would keep the VPN
        # transport out of them.  With --set-somark the mark's rule does
        # (kernel/mark.py), so the redirect happens then (issue 5).
        opts = self.ctx.options
        return opts.redirect_method != "none" or opts.set_somark is not None

    def _tun_routes(self, oif: int) -> list[Route]:
        routes = []
        wanted = [n for n in self.config.networks if not n.exclude]
        if self.config.reroute_ipv4 and self._redirects():
            wanted += DEF1_V4
        if self.config.reroute_ipv6 and self._redirects():
            wanted += DEF1_V6
        gateways = {False: self.gateway(False) or None, True: self.gateway(True) or None}
        for n in wanted:
            routes.append(Route(n.family, n.address, n.prefix, oif, gateways[n.ipv6], n.metric))
        return routes

    async def establish(self) -> int | None:
        """Create and configure the tun; returns its fd (the caller sends and
        closes it).  A DCO device's link exists already: configured, no fd.

        All or nothing: on any failure, DNS is withdrawn and this call's
        ledger undone in reverse before the error goes back to the caller.
        Events are sent only once everything is in place (spec 8 order).
        """
        async with self.lock:
            self._check_ready()
            if self.ledger is not None:
                # Establish again (spec 2.2): the new tun replaces the old one.
                # The old one goes first: its routes have the same kernel keys.
                await self._undo(self.ledger, old_link=self.link)
                self.ledger, self.state = None, State.DISABLED
            excludes = await exclude.plan(self.ctx, self.config.networks)  # NoUplink: before any change
            ledger = Ledger(self.ctx.journal.new_key(self.key), self.ctx.nl, self.ctx.journal)
            fd = None
            try:
                dns_before = await self._enable_dns("pre", "")
                if self.dco is None:
                    fd, ifname = await tun.open_tun(self.config.layer)
                else:
                    ifname = self.dco.link.ifname
                new_link = await self._configure(ledger, ifname, excludes)
                dns_after = await self._enable_dns("post", ifname)
            except BaseException:
                if fd is not None:
                    os.close(fd)
                await ledger.undo()
                self.ctx.forget_tunnel(self)
                await self.ctx.dns.withdraw(self.dns)
                raise
            self.ledger, self.link = ledger, new_link
            self.state, self.device_name = State.ESTABLISHED, ifname
            self.ctx.forget_tunnel(self)
            # Spec 8: a file backend's DNS events come first (device ""),
            # systemd-resolved's after the device, address and route events.
            self._emit_all(dns_before)
            await self._emit_established(ifname)
            self._emit_all(dns_after)
            log.info("device %s established as %s: %d addresses, %d networks", self.path, ifname,
                     len(self.config.addresses), len(self.config.networks), extra=self.log_extra)
            return fd

    async def _enable_dns(self, stage: str, ifname: str) -> list[Change]:
        if self.dns.has_values and self.ctx.dns.backend.stage == stage:
            return await self.ctx.dns.enable(self.dns, ifname)
        return []

    async def _configure(self, ledger: Ledger, ifname: str, excludes: list[Route]) -> TunLink:
        ifindex = await link.lookup(self.ctx.nl, ifname)
        if self.dco is None:
            new_link = TunLink(ifindex, ifname)
        else:  # listed for foreign.py, deleted only by its channel's ledger (at Destroy)
            new_link = TunLink(ifindex, ifname, self.dco.link.link_kind, borrowed=True)
        # One journal write for the whole Establish (each is fsync'ed): the
        # tun is not journaled before it, as it goes with our fd if we crash.
        ledger.hold([new_link])
        self.ctx.note_tunnel(self, ifindex)
        await link.configure(self.ctx.nl, new_link, self.config.mtu, self.config.txqueuelen)
        addresses = [AddressOnLink(ifindex, a) for a in self.config.addresses]
        await ledger.apply(addresses + self._tun_routes(ifindex) + excludes)
        return new_link

    # -- teardown --

    async def disable(self) -> None:
        async with self.lock:
            self._emit_all(await self.ctx.dns.disable(self.dns))
            if self.state is State.ESTABLISHED:
                await self._undo(self.ledger, old_link=self.link, keep_link=True)
                self.state = State.DISABLED

    async def teardown(self) -> None:
        """Destroy: DNS, routes, addresses, the link; the same path for every trigger."""
        async with self.lock:
            if self.state is State.DESTROYED:
                return
            self._emit_all(await self.ctx.dns.remove(self.dns))
            if self.ledger is not None:
                await self._undo(self.ledger, old_link=self.link)
            self.ledger = None
            if self.dco is not None:
                for error in await self.dco.close():
                    log.warning("device %s: DCO teardown incomplete: %s", self.path, error, extra=self.log_extra)
            self.state = State.DESTROYED
            self.ctx.forget_tunnel(self)

    async def _undo(self, ledger: Ledger, old_link: TunLink | None, keep_link: bool = False) -> None:
        routes = ledger.objects(Route)
        addresses = ledger.objects(AddressOnLink)
        was_up = ledger.objects(TunLink) and self.state is State.ESTABLISHED
        keep = 1 if keep_link and ledger.entries and isinstance(ledger.entries[0], TunLink) else 0
        errors = await ledger.undo(since=keep)
        if keep and old_link is not None:
            await link.set_down(self.ctx.nl, old_link)
        if was_up and old_link is not None:
            await self._emit_removed(old_link.ifname, routes, addresses)
        for error in errors:
            log.warning("device %s: teardown incomplete: %s", self.path, error, extra=self.log_extra)

    # -- events --

    def _emit(self, change: Change) -> None:
        self.ctx.events.emit(self.path, change)

    def _emit_all(self, changes: list[Change]) -> None:
        for change in changes:
            self._emit(change)

    async def _emit_established(self, ifname: str) -> None:
        events = self.ctx.events
        if events.wants(ChangeType.DEVICE_ADDED):
            self._emit(Change(ChangeType.DEVICE_ADDED, ifname))
        if events.wants(ChangeType.IPADDR_ADDED):
            for a in self.config.addresses:
                self._emit(Change(ChangeType.IPADDR_ADDED, ifname, address_details(a.address, a.prefix, a.ipv6)))
        if events.wants(ChangeType.ROUTE_ADDED | ChangeType.ROUTE_EXCLUDED):
            gateways = {False: self.gateway(False), True: self.gateway(True)}
            for i, n in enumerate(self.config.networks, 1):
                kind = ChangeType.ROUTE_EXCLUDED if n.exclude else ChangeType.ROUTE_ADDED
                self._emit(Change(kind, ifname, route_details(n.address, n.prefix, n.ipv6, gateways[n.ipv6])))
                if i % EMIT_SLICE == 0:
                    await asyncio.sleep(0)

    async def _emit_removed(self, ifname: str, routes: list[Route], addresses: list[AddressOnLink]) -> None:
        events = self.ctx.events
        if events.wants(ChangeType.ROUTE_REMOVED):
            # Only the client's own non-excluded networks (spec 8), not def1;
            # and only those still ours: a route someone else deleted was
            # reported then (foreign.py) and is no longer in the ledger.
            present = {(r.family == socket.AF_INET6, r.dst, r.prefix) for r in routes}
            for i, n in enumerate(self.config.networks, 1):
                if not n.exclude and (n.ipv6, n.address, n.prefix) in present:
                    self._emit(Change(ChangeType.ROUTE_REMOVED, ifname, route_details(n.address, n.prefix, n.ipv6)))
                if i % EMIT_SLICE == 0:
                    await asyncio.sleep(0)
        if events.wants(ChangeType.IPADDR_REMOVED):
            for a in addresses:
                t = a.address
                self._emit(Change(ChangeType.IPADDR_REMOVED, ifname, address_details(t.address, t.prefix, t.ipv6)))
        if events.wants(ChangeType.DEVICE_REMOVED):
            self._emit(Change(ChangeType.DEVICE_REMOVED, ifname))
