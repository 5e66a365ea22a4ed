"""Mark and sweep: routes and rules carrying our protocol that no ledger knows.

Run once at start, after the journal was undone.  Whatever still carries
RTPROT_NETCFG then was left by a run whose journal is gone (a wiped
--state-dir); it cannot belong to anyone else, because the bus name is ours.
"""

from __future__ import annotations

import socket

from .netlink import Netlink, refused
from .route import RTPROT_NETCFG, Route
from .rule import Rule, remove as remove_rules


async def orphan_routes(nl: Netlink) -> int:
    found = []
    for family in (socket.AF_INET, socket.AF_INET6):
        async with refused("dump routes", "all tables"):
            async for msg in await nl.ipr.route("dump", family=family):  # every table
                if msg["proto"] != RTPROT_NETCFG:
                    continue
                dst = msg.get("dst") or ("::" if family == socket.AF_INET6 else "0.0.0.0")
                found.append(Route(family, dst, msg["dst_len"], msg.get("oif") or 0, msg.get("gateway"),
                                   msg.get("priority"), msg.get("table") or msg["table"]))
    if found:
        await nl.routes.delete(found)
    return len(found)


async def orphan_rules(nl: Netlink) -> int:
    found = []
    for family in (socket.AF_INET, socket.AF_INET6):
        async with refused("dump rules", "all"):
            async for msg in await nl.ipr.rule("dump", family=family):
                if msg.get("protocol") != RTPROT_NETCFG:
                    continue
                found.append(Rule(family, msg.get("priority") or 0, msg.get("fwmark") or 0,
                                  msg.get("table") or msg["table"], msg.get("fwmask") or 0))
    await remove_rules(nl, found)
    return len(found)
