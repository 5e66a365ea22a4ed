"""The --set-somark bypass: what makes a marked socket really leave by the uplink.

The original only sets SO_MARK and leaves the routing to the admin (spec 6.2).
We also install, per family, the rule `fwmark MARK lookup TABLE` and, in
TABLE, a copy of the uplink's default route (the gateway the kernel would
use without our tunnels).  A marked packet then finds its way out before
the main table with its redirect-gateway routes is ever consulted; the rule
comes before `main` (priority < 32766).  When the family has no uplink the
table stays empty for it and the lookup falls through to the main table.

Lifetime: one set, shared.  The mark is one value for the whole service,
so every protected socket needs the very same rule and table; per-caller
copies would be identical duplicates.  It is installed with the first
protection that set the mark and removed with the last one (each caller's
release: its next ProtectSocket without a mark, Cleanup, leaving the bus,
its last device, shutdown).  It has its own journaled ledger ("somark"), so
a crash of the service cannot leave it behind either.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from .ledger import Ledger
from .netlink import Netlink
from .route import Route
from .rule import Rule, family_rules
from .uplink import UplinkView, retarget

log = logging.getLogger(__name__)

LEDGER_LABEL = "somark"


class MarkRouting:
    def __init__(self, nl: Netlink, journal, mark: int, table: int, priority: int) -> None:
        self.nl, self.mark, self.table, self.priority = nl, mark, table, priority
        self.ledger = Ledger(journal.new_key(LEDGER_LABEL), nl, journal)
        self.holders: set[str] = set()
        self.lock = asyncio.Lock()

    def __str__(self) -> str:
        return f"fwmark {self.mark:#x} -> table {self.table} (rule priority {self.priority})"

    def covers(self, ipv6: bool) -> bool:
        """True when marked packets of that family have a way out."""
        family = socket.AF_INET6 if ipv6 else socket.AF_INET
        return any(r.family == family for r in self.ledger.objects(Route))

    def desired(self, view: UplinkView) -> list[Route]:
        routes = []
        for ipv6 in (False, True):
            hop = view.default(ipv6)
            if hop is not None:
                family = socket.AF_INET6 if ipv6 else socket.AF_INET
                routes.append(Route(family, "::" if ipv6 else "0.0.0.0", 0, hop.oif, hop.gateway, table=self.table))
        return routes

    async def hold(self, holder: str, view: UplinkView) -> None:
        """`holder` (a caller's bus name) relies on the mark: install it if needed."""
        async with self.lock:
            first = not self.ledger.objects(Rule)
            if first:
                # Table first, then the rules that point at it.
                try:
                    await self.ledger.apply(self.desired(view))
                    await self.ledger.apply(family_rules(self.priority, self.mark, self.table))
                except BaseException:
                    await self.ledger.undo()
                    raise
                log.info("installed %s", self)
            else:
                await retarget(self.ledger, self.ledger.objects(Route), self.desired(view))
            self.holders.add(holder)

    async def release(self, holder: str) -> None:
        async with self.lock:
            self.holders.discard(holder)
            if not self.holders and self.ledger.entries:
                errors = await self.ledger.undo()
                log.info("removed %s (no protection uses the mark any more)%s", self,
                         f": {len(errors)} errors" if errors else "")

    async def follow(self, view: UplinkView) -> None:
        """The uplink moved: the table's copies move with it."""
        async with self.lock:
            if self.ledger.entries:
                await retarget(self.ledger, self.ledger.objects(Route), self.desired(view))
