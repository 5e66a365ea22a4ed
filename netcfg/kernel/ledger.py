"""The ledger: what one owner has put into the kernel, in creation order.

Every object is journaled (state.py) *before* it is sent, so whatever
happens next (failure half-way, SIGKILL of the service) the journal lists a
superset of what exists.  Teardown is the ledger walked in reverse, the same
path for Destroy, Disable, a vanished client, SIGTERM and the next start
after a crash; "already gone" counts as done.  Deletes carry our route
protocol, so undoing an add that failed with EEXIST never removes a route
that belonged to someone else.
"""

from __future__ import annotations

import logging
from itertools import groupby
from typing import Union

from ..errors import KernelRefused
from . import address, link
from .address import AddressOnLink
from .link import TunLink
from .netlink import Netlink
from .route import Route

log = logging.getLogger(__name__)

KernelObject = Union[TunLink, AddressOnLink, Route]


class Ledger:
    def __init__(self, key: str, nl: Netlink, journal) -> None:
        self.key = key
        self.nl = nl
        self.journal = journal
        self.entries: list[KernelObject] = []

    def __len__(self) -> int:
        return len(self.entries)

    def objects(self, kind: type, since: int = 0) -> list:
        return [e for e in self.entries[since:] if isinstance(e, kind)]

    def record(self, objs: list[KernelObject]) -> None:
        """Journal objects that exist already (a link we just created)."""
        self.entries.extend(objs)
        self.journal.write(self.key, self.entries)

    async def apply(self, objs: list[KernelObject]) -> None:
        """Journal, then create; on the first refusal raise KernelRefused.

        Objects the kernel refused are dropped from the ledger; those of the
        same batch that were created stay, for the caller's rollback.
        """
        if not objs:
            return
        self.record(objs)
        for kind, group in groupby(objs, type):
            group = list(group)
            failed = await _create(self.nl, kind, group)
            if failed:
                refused = {id(obj) for obj, _ in failed}
                self.entries = [e for e in self.entries if id(e) not in refused]
                self.journal.write(self.key, self.entries)
                raise failed[0][1]

    def forget(self, objs: list[KernelObject]) -> None:
        """Someone else removed these from the kernel: drop them, no kernel call."""
        gone = {id(o) for o in objs}
        self.entries = [e for e in self.entries if id(e) not in gone]
        if self.entries:
            self.journal.write(self.key, self.entries)
        else:
            self.journal.remove(self.key)

    async def undo(self, since: int = 0) -> list[Exception]:
        """Remove entries[since:] in reverse order; gather errors, keep going."""
        errors: list[Exception] = []
        tail = self.entries[since:]
        for kind, group in groupby(reversed(tail), type):
            try:
                await _remove(self.nl, kind, list(group))
            except KernelRefused as e:
                log.warning("teardown of %s: %s", self.key, e)
                errors.append(e)
        del self.entries[since:]
        if self.entries:
            self.journal.write(self.key, self.entries)
        else:
            self.journal.remove(self.key)
        return errors


async def _create(nl: Netlink, kind: type, objs: list) -> list[tuple[object, KernelRefused]]:
    if kind is Route:
        failures = await nl.routes.add(objs)
        return [(f.route, KernelRefused("add", f.route, f.errno, f.extack)) for f in failures]
    if kind is AddressOnLink:
        return await address.add(nl, objs)
    if kind is TunLink:
        return []  # created by kernel/tun.py before it was recorded
    raise TypeError(f"no create for {kind}")


async def _remove(nl: Netlink, kind: type, objs: list) -> None:
    if kind is Route:
        failures = await nl.routes.delete(objs)
        if failures:
            f = failures[0]
            raise KernelRefused("delete", f.route, f.errno, f.extack)
    elif kind is AddressOnLink:
        await address.remove(nl, objs)
    elif kind is TunLink:
        await link.remove(nl, objs)
    else:
        raise TypeError(f"no remove for {kind}")
