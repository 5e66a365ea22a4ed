"""Our links: a tun's or a DCO device's settings (MTU, up, txqueuelen), and removal.

A tun is created by kernel/tun.py (its fd is the client's); a DCO link
(kind `ovpn-dco` or `ovpn`) is created here, at EnableDCO.  The ledger
records a link first, so a rollback or teardown deletes it last (after its
routes and addresses).
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

from pyroute2.netlink.exceptions import NetlinkError

from ..errors import KernelRefused
from .kinds import Kind, register
from .netlink import Netlink, refused
from .nlmsg import GONE

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TunLink:
    """A kernel link netcfg created.  Identity: ifindex and name, and kind.

    ifindex 0: not known when journaled (a DCO link is journaled before it is
    created); such a link is found by name.  borrowed: listed in a device's
    Establish ledger so that foreign.py sees it, but created and deleted by
    another ledger (a DCO link outlives Disable and a second Establish).
    """

    ifindex: int
    ifname: str
    link_kind: str = "tun"  # IFLA_INFO_KIND: tun, ovpn-dco, ovpn (not `kind`: the journal uses that key)
    borrowed: bool = False

    def __str__(self) -> str:
        return f"link {self.ifname} (#{self.ifindex})" if self.ifindex else f"link {self.ifname}"


async def lookup(nl: Netlink, ifname: str, kind: str | None = None) -> int:
    """The ifindex of link `ifname` (ENODEV if there is none, or if it is not of `kind`)."""
    try:
        found = await nl.ipr.link("get", ifname=ifname)
    except NetlinkError as e:
        raise KernelRefused("lookup", f"link {ifname}", errno.ENODEV if e.code in GONE else e.code) from None
    msg = found[0]
    if kind is not None and (msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) or "") != kind:
        raise KernelRefused("lookup", f"{kind} link {ifname}", errno.ENODEV, "a link of another kind has the name")
    return msg["index"]


async def create(nl: Netlink, links: list[TunLink]) -> list[tuple[TunLink, KernelRefused]]:
    """Create DCO links (a tun exists before it is recorded: nothing to do)."""
    failed = []
    for link in links:
        if link.link_kind == "tun" or link.borrowed:
            continue
        try:
            async with refused("create", link):
                await nl.ipr.link("add", ifname=link.ifname, kind=link.link_kind)
        except KernelRefused as e:
            failed.append((link, e))
    return failed


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
    """Delete each link that is still ours (not borrowed); go on past a refusal, report them."""
    failed = []
    for link in links:
        if link.borrowed:
            continue
        try:
            ifindex = await _still_ours(nl, link)
            if ifindex is None:
                continue
            async with refused("delete", link, ignore=GONE):
                await nl.ipr.link("del", index=ifindex)
        except KernelRefused as e:
            failed.append((link, e))
    return failed


async def _still_ours(nl: Netlink, link: TunLink) -> int | None:
    """The ifindex of our link if it is still there.  Index numbers are
    reused (a journal may outlive a reboot, a client's tun may vanish with
    its fd): never delete a link that merely inherited the number, or a
    name."""
    try:
        if link.ifindex:
            found = await nl.ipr.link("get", index=link.ifindex)
        else:
            found = await nl.ipr.link("get", ifname=link.ifname)
    except NetlinkError as e:
        if e.code in GONE:
            return None
        raise KernelRefused("look up", link, e.code) from None
    msg = found[0]
    kind = (msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) or "")
    if msg.get("ifname") != link.ifname or kind != link.link_kind:
        log.warning("not deleting %s (%s): it is now %s (%s)", link, link.link_kind, msg.get("ifname"), kind or "?")
        return None
    return msg["index"]


class LinkKind(Kind[TunLink]):
    name, type = "link", TunLink

    async def create(self, nl, objs: list[TunLink]) -> list[tuple[TunLink, KernelRefused]]:
        return await create(nl, objs)

    async def remove(self, nl, objs: list[TunLink]) -> list[tuple[TunLink, KernelRefused]]:
        return await remove(nl, objs)

    def observed_key(self, link: TunLink) -> tuple:
        return ("link", link.ifindex)

    def link_of(self, link: TunLink) -> int:
        return link.ifindex


LINKS = register(LinkKind())
