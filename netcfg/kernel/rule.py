"""Policy routing rules: the value type, its add and its remove.

netcfg installs one kind of rule: `fwmark MARK lookup TABLE` (the
--set-somark bypass, kernel/mark.py).  Like our routes, every rule carries
protocol 111 (FRA_PROTOCOL, `ip rule show protocol 111`), so the kernel
itself tells ours from everyone else's, a delete only matches ours, and the
start-up sweep can find rules a lost journal forgot (kernel/sweep.py).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ..errors import KernelRefused
from .kinds import Kind, register
from .netlink import Netlink, refused
from .nlmsg import GONE
from .route import RTPROT_NETCFG, describe_family

FULL_MASK = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule netcfg owns.  Identity: the kernel's own key (every field)."""

    family: int  # socket.AF_INET / AF_INET6
    priority: int
    fwmark: int
    table: int
    fwmask: int = FULL_MASK
    proto: int = RTPROT_NETCFG

    def __str__(self) -> str:
        return (f"{describe_family(self.family)} rule {self.priority}: fwmark {self.fwmark:#x}/{self.fwmask:#x} "
                f"lookup {self.table} proto {self.proto}")

    def _fields(self) -> dict:
        # pyroute2 puts tables above 255 into FRA_TABLE itself (and
        # RT_TABLE_COMPAT into the header), as iproute2 does.
        return dict(family=self.family, priority=self.priority, fwmark=self.fwmark, fwmask=self.fwmask,
                    table=self.table, protocol=self.proto)


def family_rules(priority: int, fwmark: int, table: int) -> list[Rule]:
    """The same rule for IPv4 and IPv6: rules exist per family."""
    return [Rule(f, priority, fwmark, table) for f in (socket.AF_INET, socket.AF_INET6)]


async def add(nl: Netlink, objs: list[Rule]) -> list[tuple[Rule, Exception]]:
    """Add rules one by one (there are two); report refusals.

    pyroute2 sends NLM_F_EXCL: an identical rule that exists already comes
    back as EEXIST instead of being added twice (the kernel would keep both).
    """
    failed = []
    for rule in objs:
        try:
            async with refused("add", rule):
                await nl.ipr.rule("add", **rule._fields())
        except KernelRefused as e:
            failed.append((rule, e))
    return failed


async def remove(nl: Netlink, objs: list[Rule]) -> list[tuple[Rule, KernelRefused]]:
    """Delete each rule ("already gone" is done); go on past a refusal, report them."""
    failed = []
    for rule in objs:
        try:
            async with refused("delete", rule, ignore=GONE):
                await nl.ipr.rule("del", **rule._fields())
        except KernelRefused as e:
            failed.append((rule, e))
    return failed


class RuleKind(Kind[Rule]):
    name, type = "rule", Rule

    async def create(self, nl, objs: list[Rule]) -> list[tuple[Rule, Exception]]:
        return await add(nl, objs)

    async def remove(self, nl, objs: list[Rule]) -> list[tuple[Rule, KernelRefused]]:
        return await remove(nl, objs)


RULES = register(RuleKind())
