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
from errno import EEXIST
from itertools import groupby
from typing import Any

from . import kinds
from .netlink import Netlink

log = logging.getLogger(__name__)

KernelObject = Any  # a value of a registered kind (kernel/kinds.py)
UNDELETED = ".undeleted"  # journal key suffix: deletes the kernel refused, retried at the next start


class Ledger:
    def __init__(self, key: str, nl: Netlink, journal) -> None:
        self.key = key
        self.nl = nl
        self.journal = journal
        self.entries: list[KernelObject] = []
        self.undeleted: list[KernelObject] = []  # refused deletes, journaled for the next start

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
        for kind, group in groupby(objs, kinds.of):
            group = list(group)
            failed = await kind.create(self.nl, group)
            if failed:
                refused = {id(obj) for obj, _ in failed}
                self.entries = [e for e in self.entries if id(e) not in refused]
                self._save()
                raise failed[0][1]

    def forget(self, objs: list[KernelObject]) -> None:
        """Someone else removed these from the kernel: drop them, no kernel call."""
        gone = {id(o) for o in objs}
        self.entries = [e for e in self.entries if id(e) not in gone]
        self._save()

    async def replace(self, pairs: list[tuple[KernelObject, KernelObject]]) -> list[Exception]:
        """Swap recorded objects for new ones in place (the uplink moved).

        Journal old + new (a superset, whatever happens next), delete the
        old, add the new, journal the result.  Delete first: the new object
        has the old one's kernel key (a route's dst, table, metric), so an
        add first would be EEXIST.  If a delete is refused the old object
        stays recorded and its successor is not added, so nothing can exist
        that the ledger does not list.  Returns the errors.
        """
        if not pairs:
            return []
        self.journal.write(self.key, self.entries + [new for _, new in pairs])
        errors: list[Exception] = []
        swapped = {}
        for kind, group in groupby(pairs, lambda p: kinds.of(p[0])):
            group = list(group)
            failed = await kind.remove(self.nl, [old for old, _ in group])
            kept = {id(obj) for obj, _ in failed}
            errors += [e for _, e in failed]
            swapped.update((id(old), new) for old, new in group if id(old) not in kept)
        self.entries = [swapped.get(id(e), e) for e in self.entries]
        added = list(swapped.values())
        for kind, group in groupby(added, kinds.of):
            failed = await kind.create(self.nl, list(group))
            refused = {id(obj) for obj, _ in failed}
            self.entries = [e for e in self.entries if id(e) not in refused]
            errors += [e for _, e in failed]
        self._save()
        return errors

    async def ensure(self, objs: list[KernelObject]) -> list[Exception]:
        """Add recorded objects again where the kernel dropped them (link flaps).

        "Exists" is success.  An object the kernel refuses stays recorded:
        a delete of something absent counts as done.
        """
        errors: list[Exception] = []
        for kind, group in groupby(objs, kinds.of):
            failed = await kind.create(self.nl, list(group))
            errors += [e for _, e in failed if getattr(e, "errno", None) != EEXIST]
        return errors

    async def undo(self, since: int = 0) -> list[Exception]:
        """Remove entries[since:] in reverse order; gather errors, keep going.

        What the kernel refused to delete leaves the ledger (the owner is
        done with it) but not the journal: it is kept under `key` +
        UNDELETED, which the next start undoes again (registry.recover), so
        a refused delete is retried rather than forgotten.
        """
        errors: list[Exception] = []
        undeleted: list[KernelObject] = []
        tail = self.entries[since:]
        for kind, group in groupby(reversed(tail), kinds.of):
            for obj, e in await kind.remove(self.nl, list(group)):
                log.warning("teardown of %s: %s", self.key, e)
                errors.append(e)
                undeleted.insert(0, obj)  # creation order, as journaled
        del self.entries[since:]
        self._save()
        if undeleted:
            self.undeleted = undeleted + self.undeleted
            key = self.key if self.key.endswith(UNDELETED) else self.key + UNDELETED
            self.journal.write(key, self.undeleted)
        return errors

    def _save(self) -> None:
        # An empty ledger has no journal file: nothing to recover.
        if self.entries:
            self.journal.write(self.key, self.entries)
        else:
            self.journal.remove(self.key)

