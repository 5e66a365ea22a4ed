"""`--dns-backend systemd-resolved`: per-link DNS through org.freedesktop.resolve1 (spec 7.4).

Per device (after the tun exists, "post"): SetLinkDNS a(iay), SetLinkDomains
a(sb), SetLinkDefaultRoute, and SetLinkDNSSEC / SetLinkDNSOverTLS when the
client chose a mode.  Scope `global` adds the catch-all routing domain `~.`
(sent as (".", true)) and DefaultRoute=yes, so every name goes to the VPN's
servers; scope `tunnel` (split DNS) sends only the pushed domains and
DefaultRoute=no, so only those names do.  Disable, Destroy, the client
leaving and shutdown all end in RevertLink.

The original's weaknesses, fixed here: every settings object is applied
(its queue loop skipped about half, spec 7.4 [quirk]); any IPv6 text form
works (settings.py stores one canonical form); errors from resolved are
raised, so Establish fails and rolls back instead of logging and carrying on.

resolved missing at start is not fatal (upstream #124): we log it, Establish
with DNS fails with the reason meanwhile, and when the name appears on the
bus every active device is applied again.  Links we configured are noted in
the state directory before the first call, so after a crash the next start
reverts the ones that still exist.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic_file import write_atomically
from ..errors import BackendUnavailable
from .backend import BusCaller, BusCallError
from .settings import ResolverSettings, server_family_bytes

log = logging.getLogger(__name__)

RESOLVE1 = "org.freedesktop.resolve1"
PATH = "/org/freedesktop/resolve1"
MANAGER = "org.freedesktop.resolve1.Manager"
NO_SUCH_LINK = "org.freedesktop.resolve1.NoSuchLink"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
RECORD_NAME = "dns-resolved-links.json"

DNSSEC = {"yes": "yes", "no": "no", "optional": "allow-downgrade"}
DNS_OVER_TLS = {"plain": "no", "dot": "yes"}
# resolved learns about a new link from rtnetlink, a moment after the tun
# appears: a call for it before then gets NoSuchLink.  Retry for that long.
LINK_WAIT, LINK_POLL = 3.0, 0.05


@dataclass(frozen=True)
class Link:
    ifindex: int
    ifname: str

    def __str__(self) -> str:
        return f"{self.ifname} (#{self.ifindex})"


class ResolvedBackend:
    name = "systemd-resolved"
    stage = "post"

    def __init__(self, bus: BusCaller, state_dir: str, ifindex_of=socket.if_nametoindex,
                 ifname_of=socket.if_indextoname) -> None:
        self.bus = bus
        self.record_path = Path(state_dir) / RECORD_NAME
        self._ifindex_of, self._ifname_of = ifindex_of, ifname_of
        self.links: dict[int, Link] = {}  # settings.index -> the link it was applied to
        self._unreverted: set[Link] = set()  # reverts resolved was not there for
        self._active = lambda: []
        self._lock = asyncio.Lock()
        self._dot_opportunistic = False
        self._default_route = True

    def describe(self) -> str:
        return f"systemd-resolved: per-link DNS through {RESOLVE1}"

    # -- lifetime --

    async def start(self, active) -> None:
        self._active = active
        await self.bus.watch(RESOLVE1, self._owner_changed)
        present = await self.bus.has_owner(RESOLVE1)
        if not present:
            how = " (the bus can start it on demand)" if await self.bus.activatable(RESOLVE1) else ""
            log.warning("systemd-resolved (%s) is not on the bus%s: DNS settings are applied when it appears; "
                        "until then Establish with DNS servers fails", RESOLVE1, how)
        leftovers = await asyncio.to_thread(self._load_record)
        if leftovers:
            async with self._lock:
                for link in leftovers:
                    await self._revert_link(link, "left by a run that did not finish")
            await self._save_record()

    async def stop(self) -> None:
        async with self._lock:
            for link in list(self.links.values()):
                await self._revert_link(link, "service shutdown")
            self.links.clear()
            await self._save_record()

    # -- applying --

    async def apply(self, active: list[ResolverSettings], changed: ResolverSettings | None) -> None:
        async with self._lock:
            if changed is not None:
                await self._apply_one(changed)
                return
            for settings in reversed(active):  # re-sync: oldest first, each on its own link
                try:
                    await self._apply_one(settings)
                except BackendUnavailable as e:
                    log.error("%s", e)

    async def revert(self, settings: ResolverSettings, active: list[ResolverSettings]) -> None:
        async with self._lock:
            link = self.links.pop(settings.index, None)
            if link is not None:
                await self._revert_link(link, "settings withdrawn", raise_errors=True)
                await self._save_record()

    async def _apply_one(self, settings: ResolverSettings) -> None:
        try:
            link = Link(self._ifindex_of(settings.device), settings.device)
        except OSError:
            raise BackendUnavailable(f"DNS (systemd-resolved): no network interface '{settings.device}'") from None
        previous = self.links.get(settings.index)
        self.links[settings.index] = link
        await self._save_record()  # before resolved holds anything of ours for this link
        try:
            await self._configure(link, settings)
        except BaseException:
            await self._revert_link(link, "apply failed")
            if previous is not None:
                self.links[settings.index] = previous
            else:
                self.links.pop(settings.index, None)
            await self._save_record()
            raise
        if previous is not None and previous != link:  # a second Establish: new tun
            await self._revert_link(previous, "replaced by a new interface")
        log.debug("resolved: %s: servers %s, domains %s%s, scope %s", link, settings.servers,
                  settings.domains, " + ~." if settings.scope == "global" else "", settings.scope)

    async def _configure(self, link: Link, settings: ResolverSettings) -> None:
        is_global = settings.scope == "global"
        servers = [[family, raw] for family, raw in map(server_family_bytes, settings.servers)]
        domains = [[d, False] for d in settings.domains] + ([[".", True]] if is_global else [])
        await self._call(link, "SetLinkDNS", "ia(iay)", servers)
        await self._call(link, "SetLinkDomains", "ia(sb)", domains)
        if self._default_route:
            try:
                await self._call(link, "SetLinkDefaultRoute", "ib", is_global)
            except BusCallError as e:
                if e.name != UNKNOWN_METHOD:
                    raise
                self._default_route = False  # resolved < 240: `~.` alone has to do
                log.warning("systemd-resolved does not support SetLinkDefaultRoute: relying on routing domains")
        if settings.dnssec in DNSSEC:
            await self._call(link, "SetLinkDNSSEC", "is", DNSSEC[settings.dnssec])
        await self._set_transport(link, settings.transport)

    async def _set_transport(self, link: Link, transport: str) -> None:
        if transport == "doh":
            log.warning("DNS-over-HTTP is not supported by systemd-resolved: %s uses its default transport", link)
            return
        if transport not in DNS_OVER_TLS:
            return
        mode = DNS_OVER_TLS[transport]
        if mode == "yes" and self._dot_opportunistic:
            mode = "opportunistic"
        try:
            await self._call(link, "SetLinkDNSOverTLS", "is", mode)
        except BusCallError as e:
            # A resolved built without TLS refuses "yes" (spec 7.4): fall back, once and for all.
            if mode != "yes" or "Invalid DNSOverTLS setting" not in e.text:
                raise
            self._dot_opportunistic = True
            log.warning("systemd-resolved refused DNSOverTLS=yes (%s): using 'opportunistic'", e.text)
            await self._call(link, "SetLinkDNSOverTLS", "is", "opportunistic")

    async def _call(self, link: Link, member: str, signature: str, value) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINK_WAIT
        while True:
            try:
                await self.bus.call(RESOLVE1, PATH, MANAGER, member, signature, [link.ifindex, value])
                return
            except BusCallError as e:
                if e.name == NO_SUCH_LINK and loop.time() < deadline:
                    await asyncio.sleep(LINK_POLL)
                    continue
                raise BusCallError(f"DNS (systemd-resolved): {member} on {link}", e.name, e.text) from None

    async def _revert_link(self, link: Link, why: str, raise_errors: bool = False) -> None:
        try:
            if self._ifname_of(link.ifindex) != link.ifname:
                return  # gone, and the index now names another link: nothing of ours is left
        except OSError:
            self._unreverted.discard(link)
            return  # the link is gone, and with it resolved's settings for it
        try:
            await self.bus.call(RESOLVE1, PATH, MANAGER, "RevertLink", "i", [link.ifindex])
            self._unreverted.discard(link)
            log.debug("resolved: reverted %s (%s)", link, why)
        except BusCallError as e:
            if e.name == NO_SUCH_LINK:
                return
            # resolved keeps link settings across its own restarts (/run/systemd/resolve/netif):
            # revert when it is back.
            self._unreverted.add(link)
            log.warning("resolved: RevertLink on %s failed (%s): %s %s", link, why, e.name, e.text)
            if raise_errors:
                raise BusCallError(f"DNS (systemd-resolved): RevertLink on {link}", e.name, e.text) from None

    # -- resolved coming and going --

    async def _owner_changed(self, present: bool) -> None:
        if not present:
            log.warning("systemd-resolved left the bus: DNS settings are applied again when it is back")
            return
        async with self._lock:
            active = self._active()
            log.info("systemd-resolved is on the bus: applying the DNS settings of %d devices", len(active))
            for link in list(self._unreverted):
                await self._revert_link(link, "withdrawn while resolved was away")
            for settings in reversed(active):
                try:
                    await self._apply_one(settings)
                except BackendUnavailable as e:
                    log.error("%s", e)

    # -- the record in the state directory --

    async def _save_record(self) -> None:
        links = sorted({*self.links.values(), *self._unreverted}, key=lambda link: link.ifindex)
        await asyncio.to_thread(self._write_record, [asdict(link) for link in links])

    def _write_record(self, links: list[dict]) -> None:
        if not links:
            self.record_path.unlink(missing_ok=True)
            return
        self.record_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(self.record_path, json.dumps(links).encode())

    def _load_record(self) -> list[Link]:
        try:
            return [Link(**entry) for entry in json.loads(self.record_path.read_text(encoding="utf-8"))]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError) as e:
            log.error("unreadable %s: %s", self.record_path, e)
            return []
