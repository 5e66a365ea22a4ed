"""The tun link: its settings (MTU, up, txqueuelen) and its removal.

The link is created by kernel/tun.py; the ledger records it first, so a
rollback or teardown deletes it last (after its routes and addresses).
"""

from __future__ import annotations

from dataclasses import dataclass

from .netlink import GONE, Netlink, refused


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
        from ..errors import KernelRefused
        import errno

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


async def remove(nl: Netlink, links: list[TunLink]) -> None:
    for link in links:
        async with refused("delete", link, ignore=GONE):
            await nl.ipr.link("del", index=link.ifindex)
