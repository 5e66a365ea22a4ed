"""One virtual device: what its client asked for, and what it put in the kernel.

A Session holds the desired configuration (validated value types, set
through its methods) and, once established, the ledger of kernel objects.
It is the only writer of its own state: only its methods take its lock,
change its configuration, its ledger and its entries in the tunnel table,
call the session hooks and report its events (docs/architecture.md, "Who
may change a session").  The bus faces, the registry, foreign.py and the
uplink follower only call these methods.

Establish is a transaction: on any failure everything this call created
is undone in reverse and the caller gets the reason.  Destroy, Cleanup,
the client vanishing and shutdown all end in `teardown`, which always
finishes: every step runs whatever failed before it, and the errors are
returned together.
"""

from __future__ import annotations

import asyncio
import logging
import os
from enum import Enum

from . import device_events, exclude, inject, reconcile
from .context import Context, Owner, SessionEvent, Transition
from .dco.channel import DcoChannel
from .device_config import DeviceConfig, check_layer, check_mtu, check_txqueuelen
from .dns.settings import check_scope
from .errors import InvalidArgument, StateError
from .events import Change, ChangeType
from .kernel import kinds, link, tun
from .kernel.address import AddressOnLink, TunnelAddress
from .kernel.ledger import Ledger
from .kernel.link import TunLink
from .kernel.notices import LinkNotice, Notice, Resync
from .kernel.route import DEF1_V4, DEF1_V6, Network, Route
from .kernel.uplink import UplinkView, retarget, slot_key
from .process import ClientProcess

log = logging.getLogger(__name__)

# Route events queued between two yields to the loop: queueing one costs
# ~5 us with 10 subscribers, so 10,000 routes held the loop for ~50 ms (and
# 100,000 for ~0.5 s) while other clients' calls waited.  The session lock
# is held meanwhile, so no other event of this device (a reconcile's
# included) can come between them.
EMIT_SLICE = 500


class State(Enum):
    NEW = "new"
    ESTABLISHED = "established"
    DISABLED = "disabled"
    DESTROYED = "destroyed"


class Session:
    def __init__(self, ctx: Context, path: str, name: str, owner: Owner, process: ClientProcess | None = None):
        self.ctx, self.path, self.owner = ctx, path, owner
        self.device_name = name
        self.key = path.rsplit("/", 1)[-1]
        # Log signals come from the device's path (spec 9); the journal gets both as fields (log.py)
        self.log_extra = {"netcfg_path": path, "netcfg_owner": owner}
        self.config = DeviceConfig()
        self.state = State.NEW
        self.ledger: Ledger | None = None
        self.link: TunLink | None = None
        self.dco: DcoChannel | None = None  # EnableDCO: the device is a DCO link, not a tun
        self.dns = ctx.dns.new_settings()
        self.process = process  # the creator, pinned by a pidfd (process.py)
        self.lock = asyncio.Lock()  # one change at a time per device; taken only here

    # -- desired configuration: validated here, applied at Establish --

    async def set_mtu(self, value: int) -> None:
        async with self.lock:
            self.config.mtu = check_mtu(value)

    async def set_layer(self, value: int) -> None:
        async with self.lock:
            self.config.layer = check_layer(value)

    async def set_txqueuelen(self, value: int) -> None:
        async with self.lock:
            self.config.txqueuelen = check_txqueuelen(value)

    async def set_reroute(self, ipv6: bool, value: bool) -> None:
        async with self.lock:
            if ipv6:
                self.config.reroute_ipv6 = bool(value)
            else:
                self.config.reroute_ipv4 = bool(value)

    async def set_remote(self, address: str) -> None:
        async with self.lock:
            self.config.remote = address

    async def add_address(self, address: TunnelAddress) -> None:
        async with self.lock:
            self.config.check_room_for_address()
            self.config.addresses.append(address)

    def check_room_for_networks(self, count: int) -> None:
        """Refuse a batch over the bound before anyone parses it."""
        self.config.check_room_for_networks(count)

    async def add_networks(self, networks: list[Network]) -> None:
        await inject.point("add_networks")
        async with self.lock:
            self.config.check_room_for_networks(len(networks))
            self.config.networks.extend(networks)

    async def set_dns_scope(self, scope: str) -> None:
        value = check_scope(scope)
        async with self.lock:
            self.dns.scope = value

    async def add_dns_servers(self, servers: list[str]) -> None:
        async with self.lock:
            self.dns.add_servers(servers)

    async def add_dns_domains(self, domains: list[str]) -> None:
        async with self.lock:
            self.dns.add_domains(domains)

    async def set_dnssec(self, mode: str) -> None:
        async with self.lock:
            self.dns.set_dnssec(mode)

    async def set_dns_transport(self, mode: str) -> None:
        async with self.lock:
            self.dns.set_transport(mode)

    # -- what others read --

    @property
    def dco_path(self) -> str:
        return self.path + "/dco"

    def object_paths(self) -> list[str]:
        return [self.path, self.dco_path] if self.dco is not None else [self.path]

    def held_objects(self) -> list:
        """What this device holds in the kernel, creation order: a copy, for admin views.

        A DCO link is listed once: by the Establish ledger when established
        (with its ifindex), else by the DCO channel's own ledger.
        """
        held = list(self.ledger.entries) if self.ledger is not None else []
        if self.dco is not None and not any(isinstance(o, TunLink) for o in held):
            held = list(self.dco.ledger.entries) + held
        return held

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

    def _redirects(self, ipv6: bool) -> bool:
        # `none` adds no def1 routes (spec 5.3): nothing would keep the VPN
        # transport out of them.  With --set-somark the mark's rule does
        # (kernel/mark.py), so the redirect happens then (issue 5).
        opts = self.ctx.options
        wanted = self.config.reroute_ipv6 if ipv6 else self.config.reroute_ipv4
        return wanted and (opts.redirect_method != "none" or opts.set_somark is not None)

    def _tun_routes(self, oif: int) -> list[Route]:
        wanted = [n for n in self.config.networks if not n.exclude]
        if self._redirects(False):
            wanted += DEF1_V4
        if self._redirects(True):
            wanted += DEF1_V6
        gateways = {False: self.gateway(False) or None, True: self.gateway(True) or None}
        return [Route(n.family, n.address, n.prefix, oif, gateways[n.ipv6], n.metric) for n in wanted]

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
            excludes = await self._plan_excludes()  # NoUplink: before any change
            ledger = Ledger(self.ctx.journal.new_key(self.key), self.ctx.nl, self.ctx.journal)
            fd = None
            try:
                dns_before = await self._enable_dns("pre", "")
                if self.dco is None:
                    fd, ifname = await tun.open_tun(self.config.layer)
                else:
                    ifname = self.dco.link.ifname
                new_link = await self._configure(ledger, ifname, excludes)
                await ledger.apply(await self._tell(Transition.ESTABLISHED, new_link))
                dns_after = await self._enable_dns("post", ifname)
            except BaseException:
                if fd is not None:
                    os.close(fd)
                await ledger.undo()
                self.ctx.tunnels.release(self, keep=self._live_ifindex())
                await self.ctx.dns.withdraw(self.dns)
                raise
            self.ledger, self.link = ledger, new_link
            self.state, self.device_name = State.ESTABLISHED, ifname
            self.ctx.tunnels.release(self, keep=new_link.ifindex)
            # Spec 8: a file backend's DNS events come first (device ""),
            # systemd-resolved's after the device, address and route events.
            self._emit_all(dns_before)
            gateways = {False: self.gateway(False), True: self.gateway(True)}
            await self._emit_sliced(device_events.established(self.config, ifname, gateways, self.ctx.events))
            self._emit_all(dns_after)
            log.info("device %s established as %s: %d addresses, %d networks", self.path, ifname,
                     len(self.config.addresses), len(self.config.networks), extra=self.log_extra)
            return fd

    async def _plan_excludes(self) -> list[Route]:
        """Exclude routes for this Establish (the routing table is read only when there are excludes)."""
        if not any(n.exclude for n in self.config.networks):
            return []
        view = await UplinkView.read(self.ctx.nl, self.ctx.tunnels.ifindexes())
        return exclude.plan(self.config.networks, view)

    async def _enable_dns(self, stage: str, ifname: str) -> list[Change]:
        if self.dns.has_values and self.ctx.dns.backend.stage == stage:
            return await self.ctx.dns.enable(self.dns, ifname)
        return []

    async def _configure(self, ledger: Ledger, ifname: str, excludes: list[Route]) -> TunLink:
        ifindex = await link.lookup(self.ctx.nl, ifname) if self.dco is None else self.dco.ifindex
        if self.dco is None:
            new_link = TunLink(ifindex, ifname)
        else:  # listed for reconcile, deleted only by its channel's ledger (at Destroy)
            new_link = TunLink(ifindex, ifname, self.dco.link.link_kind, borrowed=True)
        # One journal write for the whole Establish (each is fsync'ed): the
        # tun is not journaled before it, as it goes with our fd if we crash.
        ledger.hold([new_link])
        self.ctx.tunnels.add(ifindex, self)
        await link.configure(self.ctx.nl, new_link, self.config.mtu, self.config.txqueuelen)
        await inject.point("establish.configured")
        addresses = [AddressOnLink(ifindex, a) for a in self.config.addresses]
        await ledger.apply(addresses + self._tun_routes(ifindex) + excludes)
        return new_link

    def _live_ifindex(self) -> int | None:
        return self.link.ifindex if self.link is not None and self.state is not State.DESTROYED else None

    # -- Disable, teardown --

    async def disable(self) -> None:
        async with self.lock:
            self._emit_all(await self.ctx.dns.disable(self.dns))
            if self.state is State.ESTABLISHED:
                await self._undo(self.ledger, old_link=self.link, keep_link=True)
                self.state = State.DISABLED
                for error in await self._tell_teardown(Transition.DISABLED):
                    log.warning("device %s: %s", self.path, error, extra=self.log_extra)

    async def teardown(self, lost: bool = False) -> list[Exception]:
        """Destroy: hooks, DNS, routes, addresses, the link, the DCO channel.

        The same path for every trigger (`lost`: the client left the bus or
        died, rather than asked).  Every step runs, whatever failed before
        it; what the kernel refused to delete is journaled for the next
        start (kernel/ledger.py).  The session ends DESTROYED, out of the
        tunnel table, its fds and sockets closed.  Returns the errors.
        """
        async with self.lock:
            if self.state is State.DESTROYED:
                return []
            errors = await self._tell_teardown(Transition.LOST if lost else Transition.DESTROYED)
            errors += await _gathered("DNS", self._remove_dns())
            if self.ledger is not None:
                errors += await _gathered("kernel", self._undo(self.ledger, old_link=self.link))
            self.ledger = None
            if self.dco is not None:
                errors += await _gathered("DCO", self._close_dco())
            self.state = State.DESTROYED
            self.ctx.tunnels.release(self)
            if self.process is not None:
                self.process.close()
            if errors:
                log.warning("device %s: teardown incomplete, %d errors: %s", self.path, len(errors),
                            "; ".join(map(str, errors)), extra=self.log_extra)
            return errors

    async def _remove_dns(self) -> list[Exception]:
        await inject.point("teardown.dns")
        changes, errors = await self.ctx.dns.remove(self.dns)
        self._emit_all(changes)
        return errors

    async def _close_dco(self) -> list[Exception]:
        await inject.point("teardown.dco")
        return await self.dco.close()

    async def _undo(self, ledger: Ledger, old_link: TunLink | None, keep_link: bool = False) -> list[Exception]:
        routes = ledger.objects(Route)
        addresses = ledger.objects(AddressOnLink)
        was_up = ledger.objects(TunLink) and self.state is State.ESTABLISHED
        keep = 1 if keep_link and ledger.entries and isinstance(ledger.entries[0], TunLink) else 0
        await inject.point("teardown.kernel")
        errors = await ledger.undo(since=keep)
        if keep and old_link is not None:
            await link.set_down(self.ctx.nl, old_link)
        if was_up and old_link is not None:
            await self._emit_sliced(device_events.removed(self.config, old_link.ifname, routes, addresses,
                                                          self.ctx.events))
        return errors

    # -- session hooks --

    def _event(self, transition: Transition, at: TunLink | None) -> SessionEvent:
        return SessionEvent(transition, self.path, self.owner, at.ifname if at else self.device_name,
                            at.ifindex if at else None, self._redirects(False), self._redirects(True))

    async def _tell(self, transition: Transition, at: TunLink | None) -> list:
        """Call the hooks; at ESTABLISHED their kernel objects are returned (an error fails the Establish)."""
        held: list = []
        for hook in self.ctx.hooks:
            held += await hook(self._event(transition, at)) or []
        return held

    async def _tell_teardown(self, transition: Transition) -> list[Exception]:
        """Call every hook, whatever the others did; their errors."""
        errors: list[Exception] = []
        for hook in self.ctx.hooks:
            errors += await _gathered(f"hook {getattr(hook, '__name__', hook)}", self._one_hook(hook, transition))
        return errors

    async def _one_hook(self, hook, transition: Transition) -> list[Exception]:
        await inject.point("teardown.hooks")
        await hook(self._event(transition, self.link if self.ledger is not None else None))
        return []

    # -- following the uplink (kernel/follow.py, via the registry) --

    async def follow_uplink(self, view: UplinkView) -> None:
        """The uplink moved: move this device's exclude routes with it."""
        async with self.lock:
            if self.state is not State.ESTABLISHED or self.ledger is None:
                return
            held = [r for r in self.ledger.objects(Route) if self.link is None or r.oif != self.link.ifindex]
            desired = exclude.follow(self.config.networks, view, held)
            keys = {slot_key(r) for r in desired}
            moved = await retarget(self.ledger, [r for r in held if slot_key(r) in keys], desired)
            if self.ctx.events.wants(ChangeType.ROUTE_EXCLUDED):
                self._emit_all(device_events.excluded_moved(moved, self.device_name))

    # -- what others changed (foreign.py routes kernel notices here) --

    async def reconcile(self, notices: list[Notice]) -> None:
        """Kernel notices that may concern this device: forget and report
        what someone else removed, report what someone else put on its link."""
        async with self.lock:
            if self.ledger is None or self.state is State.DESTROYED:
                return
            if any(isinstance(n, Resync) for n in notices) or await self._links_changed(notices):
                present = {reconcile.notice_key(n) for n in await self.ctx.watch.dump()}
                gone = [e for e in self.ledger.entries if reconcile.observed_key(e) not in present]
            else:
                gone = await self._removed_by_others(notices)
            if gone and not self._went_with_its_client(gone):
                await self._forget_gone(gone)

    def _went_with_its_client(self, gone: list) -> bool:
        """Is the client exiting (process.py)?  Then what vanished went with
        it (its tun, and all on it): reporting it as removed by someone else
        would be wrong, the bus tells us the client is gone and that
        teardown is ours.  Asked whenever something is gone, not only on
        the tun's RTM_DELLINK: the notices of one tun's deletion (down,
        addresses, link) may arrive in two batches."""
        if self.process is None or not self.process.is_ending():
            return False
        log.debug("device %s: %s went with its client (pid %d)", self.path, ", ".join(map(str, gone[:3])),
                  self.owner.pid)
        return True

    async def _links_changed(self, notices: list[Notice]) -> bool:
        """Did a link under objects of ours go away or down?  IPv4 routes then
        vanish without a notification of their own."""
        links = {kinds.of(e).link_of(e) for e in self.ledger.entries} - {None}
        changed = {n.ifindex: n for n in notices if isinstance(n, LinkNotice) and n.ifindex in links}
        if any(not n.added for n in changed.values()):
            return True
        if not changed or self.state is not State.ESTABLISHED:
            return False  # Disable sets the link down itself
        # "Down" may be old news (a new tun starts down): ask for the state now.
        now = {n.ifindex: n for n in await self.ctx.watch.dump(routes=False, addresses=False)}
        return any(i not in now or not now[i].up for i in changed)

    async def _removed_by_others(self, notices: list[Notice]) -> list:
        ours = {reconcile.observed_key(e): e for e in self.ledger.entries}
        candidates = []
        for n in notices:
            if isinstance(n, LinkNotice):
                continue
            key = reconcile.notice_key(n)
            if not n.added and key in ours:
                candidates.append(ours.pop(key))
            elif key not in ours:
                self._report_foreign(n)
        if not candidates:
            return []
        # A removal notice may be stale: our own Disable deleted the object
        # and a later Establish put it back before we got here.  The kernel's
        # present state decides.
        routes = any(isinstance(c, Route) for c in candidates)
        addresses = any(isinstance(c, AddressOnLink) for c in candidates)
        present = {reconcile.notice_key(n) for n in await self.ctx.watch.dump(False, addresses, routes)}
        return [c for c in candidates if reconcile.observed_key(c) not in present]

    async def _forget_gone(self, gone: list) -> None:
        """Forget `gone` (and what went with its link) and report it in teardown order."""
        own_link = next((e for e in self.ledger.entries if isinstance(e, TunLink)), None)
        ids = {id(e) for e in gone}
        link_gone = own_link is not None and id(own_link) in ids
        if link_gone:  # everything on the link went with it
            gone += [e for e in self.ledger.entries if id(e) not in ids and reconcile.on_link(e, own_link.ifindex)]
        await self.ledger.forget(gone)
        more = f" and {len(gone) - 5} more" if len(gone) > 5 else ""
        log.warning("device %s: removed by someone else: %s%s", self.path, ", ".join(map(str, gone[:5])), more)
        ifname = own_link.ifname if own_link is not None else self.device_name
        self._emit_all(device_events.gone(self.config, gone, ifname, link_gone))

    def _report_foreign(self, n: Notice) -> None:
        """Someone else's object on the device's link (never in the ledger: not ours to remove)."""
        own = self.link
        if self.state is not State.ESTABLISHED or own is None or not any(
                isinstance(e, TunLink) and e.ifindex == own.ifindex for e in self.ledger.entries):
            return
        change = reconcile.change_of_foreign(n, own)
        if change is not None:
            self._emit(change)

    # -- events --

    def _emit(self, change: Change) -> None:
        self.ctx.events.emit(self.path, change)

    def _emit_all(self, changes) -> None:
        for change in changes:
            self._emit(change)

    async def _emit_sliced(self, changes) -> None:
        for i, change in enumerate(changes, 1):
            self._emit(change)
            if i % EMIT_SLICE == 0:
                await asyncio.sleep(0)


async def _gathered(step: str, work) -> list[Exception]:
    """One teardown step's errors: those it returns, or the one it raised
    (cancellation aside), so that the next step runs all the same."""
    try:
        return list(await work)
    except Exception as e:
        log.error("teardown step %s failed: %s", step, e, exc_info=not isinstance(e, inject.InjectedFailure))
        return [e]
