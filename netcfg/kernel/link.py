"""The tun link: its settings (MTU, up, txqueuelen) and its removal.

The link is created by kernel/tun.py; the ledger records it first, so a
rollback or teardown deletes it last (after its routes and addresses).
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

from pyroute2.netlink.exceptions import NetlinkError

from ..errors import KernelRefused
from .netlink import GONE, Netlink, refused

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TunLink:
    """A kernel link netcfg created.  Identity: ifindex (ifname for humans)."""

    ifindex: int
    ifname: str

    def __str__(self) -> str:
        return f"link {self.ifname} (#{self.ifindex})"


async def lookup(nl: Netlink, ifname: str) -> int:
    async with refused("lookup", ifname):
        found = await nl.ipr.link_lookup(ifname=ifname)
    if not found:
        raise KernelRefused("lookup", f"link {ifname}", errno.ENODEV)
    return found[0]


async def configure(nl: Netlink, link: TunLink, mtu: int, txqueuelen: int) -> None:
    """Set MTU (and txqueuelen when asked), then bring the link up."""
    settings = {"mtu": mtu}
    if txqueuelen:
        settings["txqlen"] = txqueuelen
    async with refused("configure", link):
        await nl.ipr.link("set", index=link.ifindex, **settings)
    async with refused("set up", link):
        await nl.ipr.link("set", index=link.ifindex, state="up")


async def set_down(nl: Netlink, link: TunLink) -> None:
    async with refused("set down", link, ignore=GONE):
        await nl.ipr.link("set", index=link.ifindex, state="down")


async def remove(nl: Netlink, links: list[TunLink]) -> list[tuple[TunLink, KernelRefused]]:
    """Delete each link that is still our tun; go on past a refusal, report them."""
    failed = []
    for link in links:
        try:
            if not await _still_ours(nl, link):
                continue
            async with refused("delete", link, ignore=GONE):
                await nl.ipr.link("del", index=link.ifindex)
        except KernelRefused as e:
            failed.append((link, e))
    return failed


async def _still_ours(nl: Netlink, link: TunLink) -> bool:
    """Does `link.ifindex` still name our tun?  Index numbers are reused (a
    journal may outlive a reboot, a client's tun may vanish with its fd):
    never delete a link that merely inherited the number."""
    try:
        found = await nl.ipr.link("get", index=link.ifindex)
    except NetlinkError as e:
        if e.code in GONE:
            return False
        raise KernelRefused("look up", link, e.code) from None
    msg = found[0]
    kind = (msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) or "")
    if msg.get("ifname") != link.ifname or kind != "tun":
        log.warning("not deleting %s: index %d is now %s (%s)", link, link.ifindex, msg.get("ifname"), kind or "?")
        return False
    return True
