"""ProtectSocket: keep a VPN transport socket out of the tunnels (spec 6).

Methods: `host-route` (a /32 or /128 route to the remote via the uplink
gateway, found while ignoring netcfg's tunnels), `bind-device`
(SO_BINDTODEVICE to the uplink device, found the same way; a bound socket's
route lookups only see routes through that device, so the redirect-gateway
routes on the tun do not apply to it), `none`.  `--set-somark` additionally
marks the socket and keeps the mark's rule and table in place
(kernel/mark.py).

Each caller (unique bus name) has one `Protection`: its last request and,
for host-route, a ledger holding the host route.  The caller's next call
replaces it; the registry releases it with the caller (the original leaks
it, spec 6).  A request runs with the protection's lock held (the
registry takes it), and a release takes it too, after which the
protection is never used again.  The
uplink follower (kernel/follow.py) moves the host route when the uplink
gateway changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from dataclasses import dataclass, field

from .. import inject
from ..errors import InvalidArgument, KernelRefused
from .ledger import Ledger
from .mark import MarkRouting
from .netlink import Netlink, refused
from .route import Route
from .uplink import Hop, UplinkView, retarget

log = logging.getLogger(__name__)

# Host routes always carry an explicit metric: a delete without one would
# match another caller's route to the same remote.  Callers protecting one
# server each get their own, the second at the next metric (kernel/route.py).
HOST_ROUTE_METRIC = 1


@dataclass(eq=False)
class Protection:
    """One caller's protected socket: what it asked for, what it holds."""

    owner: object  # the caller (session.Owner); kernel/ does not import the core
    ledger: Ledger  # the host route, if any
    remote: str | None = None  # set while a host route is wanted
    ipv6: bool = False
    device_path: str | None = None  # the device named in the call, for route events
    metric: int = HOST_ROUTE_METRIC  # of its host route: higher when another caller's has it (kernel/route.py)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    released: bool = False  # its caller is done with it: never used again

    async def follow(self, view: UplinkView) -> list[tuple[Route, Route]]:
        """The uplink moved: move the host route with it (or add it, now that there is a way)."""
        async with self.lock:
            hop = view.toward(self.remote) if self.remote and not self.released else None
            if hop is None:
                return []
            desired = host_route(self.remote, self.ipv6, hop, self.metric)
            return await retarget(self.ledger, self.ledger.objects(Route), [desired])

    async def release(self) -> list[Exception]:
        """Remove what it holds; waits for a request in progress (the lock)."""
        async with self.lock:
            self.released = True
            self.remote = None
            await inject.point("protection.release")
            return await self.ledger.undo()


def host_route(remote: str, ipv6: bool, hop: Hop, metric: int) -> Route:
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    return Route(family, remote, 128 if ipv6 else 32, hop.oif, hop.gateway, metric)


def _is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def _setsockopt(fd: int, option: int, value, what: str) -> None:
    # socket(fileno=) does not take ownership if we detach() afterwards.
    sock = socket.socket(fileno=fd)
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, value)
    except OSError as e:
        raise KernelRefused(what, f"socket fd {fd}", e.errno or 0) from None
    finally:
        sock.detach()


async def protect(
    nl: Netlink, prot: Protection, remote: str, ipv6: bool, avoid: set[int],
    method: str, fd: int | None, mark: MarkRouting | None,
) -> bool:
    """Apply the configured protection; True only when it is in place."""
    # Every refusal before any change: a rejected call leaves nothing behind.
    if mark is not None and fd is None:
        raise InvalidArgument("SO_MARK requested but protect_socket call received no fd")
    if method == "bind-device" and fd is None:
        raise InvalidArgument("bind to dev method requested but protect_socket call received no fd")
    if fd is not None and (mark is not None or method == "bind-device") and not _is_socket(fd):
        raise InvalidArgument("ProtectSocket: the file descriptor passed is not a socket")
    view = await UplinkView.read(nl, avoid)
    hop = view.toward(remote)
    in_place = True
    if mark is not None:
        await mark.hold(prot.ledger.key, view)
        _setsockopt(fd, socket.SO_MARK, mark.mark, "Setting SO_MARK")
        in_place = mark.covers(ipv6)
    if method == "bind-device":
        if hop is None:
            return _unprotected(remote, ipv6)
        ifname = await _ifname(nl, hop.oif)
        _setsockopt(fd, socket.SO_BINDTODEVICE, ifname.encode(), f"SO_BINDTODEVICE to {ifname}")
        log.info("protected socket to %s: bound to %s", remote, ifname)
    elif method == "host-route":
        if not await _host_route(prot, remote, ipv6, hop):
            return _unprotected(remote, ipv6)
    if not in_place:
        log.warning("fwmark set on the socket to %s, but there is no %s uplink for the mark table yet",
                    remote, "IPv6" if ipv6 else "IPv4")
    return in_place


async def _host_route(prot: Protection, remote: str, ipv6: bool, hop: Hop | None) -> bool:
    """Replace the caller's previous host route with one to `remote` (the caller holds prot.lock)."""
    prot.remote, prot.ipv6 = remote, ipv6
    old = prot.ledger.objects(Route)
    if hop is None:
        await prot.ledger.undo()  # the previous remote's route is not wanted any more
        return False
    if old and old[0].dst == remote:
        # Same remote again: swap in place, no moment without a route.
        route = host_route(remote, ipv6, hop, old[0].metric)
        errors = await (prot.ledger.ensure(old) if old[0] == route else prot.ledger.replace([(old[0], route)]))
        if errors:
            raise errors[0]
    else:
        await prot.ledger.undo()
        await inject.point("protect.route")
        # Two callers may protect the same server (two sessions to one
        # server): the second route goes in at the next metric, so each is
        # removed with its own caller and never takes the other's away.
        await prot.ledger.apply([host_route(remote, ipv6, hop, HOST_ROUTE_METRIC)])
        route = prot.ledger.objects(Route)[0]
        prot.metric = route.metric
    log.info("protected %s with %s", remote, route)
    return True


def _unprotected(remote: str, ipv6: bool) -> bool:
    # No route to the remote outside the tunnels: nothing to protect with.
    # The answer is "false", not an error: the client decides (spec 6).
    log.warning("cannot protect %s: no %s route outside the tunnels", remote, "IPv6" if ipv6 else "IPv4")
    return False


async def _ifname(nl: Netlink, ifindex: int) -> str:
    async with refused("look up", f"link #{ifindex}"):
        links = await nl.ipr.link("get", index=ifindex)
    return links[0].get("ifname")
