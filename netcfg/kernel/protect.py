"""ProtectSocket: keep a VPN transport socket out of the tunnels (spec 6).

Methods: `host-route` (a /32 or /128 route to the remote via the uplink
gateway, found while ignoring netcfg's tunnels), `bind-device`
(SO_BINDTODEVICE to the uplink), `none`.  `--set-somark` additionally marks
the socket.  Host routes live in a per-caller ledger, so they are replaced by
the caller's next call and removed with the caller (the original leaks them).
"""

from __future__ import annotations

import logging
import socket

from ..errors import InvalidArgument, KernelRefused
from .ledger import Ledger
from .netlink import Netlink
from .route import Route
from .uplink import uplink_for

log = logging.getLogger(__name__)


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
    nl: Netlink, ledger: Ledger, remote: str, ipv6: bool, avoid: set[int],
    method: str, fd: int | None, so_mark: int | None,
) -> bool:
    """Apply the configured protection; True only when it is in place."""
    if so_mark is not None:
        if fd is None:
            raise InvalidArgument("SO_MARK requested but protect_socket call received no fd")
        _setsockopt(fd, socket.SO_MARK, so_mark, "Setting SO_MARK")
    if method == "none":
        return True
    hop = await uplink_for(nl, remote, avoid)
    if method == "bind-device":
        if fd is None:
            raise InvalidArgument("bind to dev method requested but protect_socket call received no fd")
        if hop is None:
            return _unprotected(remote, ipv6)
        ifname = await _ifname(nl, hop.oif)
        _setsockopt(fd, socket.SO_BINDTODEVICE, ifname.encode(), f"SO_BINDTODEVICE to {ifname}")
        return True
    # host-route: replace this caller's previous protection
    await ledger.undo()
    if hop is None:
        return _unprotected(remote, ipv6)
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    route = Route(family, remote, 128 if ipv6 else 32, hop.oif, hop.gateway, None)
    await ledger.apply([route])
    log.info("protected %s with %s", remote, route)
    return True


def _unprotected(remote: str, ipv6: bool) -> bool:
    # No route to the remote outside the tunnels: nothing to protect with.
    # The answer is "false", not an error: the client decides (spec 6).
    log.warning("cannot protect %s: no %s route outside the tunnels", remote, "IPv6" if ipv6 else "IPv4")
    return False


async def _ifname(nl: Netlink, ifindex: int) -> str:
    links = await nl.ipr.link("get", index=ifindex)
    return links[0].get("ifname")
