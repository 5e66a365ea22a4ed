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
        self.key = key  # unique, never reused (Journal.new_key)
        self.nl = nl
        self.journal = journal
        self.entries: list[KernelObject] = []
        self.undeleted: list[KernelObject] = []  # refused deletes, journaled for the next start

    def __len__(self) -> int:
        return len(self.entries)

    def objects(self, kind: type, since: int = 0) -> list:
        return [e for e in self.entries[since:] if isinstance(e, kind)]

    def hold(self, objs: list[KernelObject]) -> None:
        """List objects that exist already without journaling them now: they
        are journaled with the next write.  For a tun just opened, which
        vanishes with our fd if we crash before that write."""
        self.entries.extend(objs)

    async def record(self, objs: list[KernelObject]) -> None:
        """Journal objects that exist already (a link we just created)."""
        self.entries.extend(objs)
        await self.journal.write(self.key, self.entries)

    async def apply(self, objs: list[KernelObject]) -> None:
        """Journal, then create; on the first refusal raise KernelRefused.

        A key the kernel says is taken (EEXIST) is tried again with the
        kind's alternatives (a route at the next metric), each journaled
        before it is sent.  Objects the kernel refused for good, and those
        after them that were not tried, are dropped from the ledger (an
        undo must not delete what we never made: another owner may hold
        its key); those of the same call that were created stay, for the
        caller's rollback.
        """
        if not objs:
            return
        await self.record(objs)
        done = 0
        for kind, group in groupby(objs, kinds.of):
            group = list(group)
            refused = await self._create(kind, group)
            done += len(group)
            if refused:
                gone = {id(obj) for obj, _ in refused} | {id(obj) for obj in objs[done:]}
                self.entries = [e for e in self.entries if id(e) not in gone]
                await self._save()
                raise refused[0][1]

    async def _create(self, kind: kinds.Kind, group: list) -> list[tuple[KernelObject, Exception]]:
        """Create `group`, falling back to alternatives on EEXIST; what stays refused."""
        failed = await _guarded(kind.create, self.nl, group)
        wanted = {id(obj): obj for obj in group}  # what each attempt stands for
        tried = list(group)  # keeps every attempt alive: `wanted` is keyed by id
        refused: list[tuple[KernelObject, Exception]] = []
        attempt, shared = 1, 0
        while failed:
            retries = []
            for obj, error in failed:
                alternative = None
                if getattr(error, "errno", None) == EEXIST:
                    alternative = kind.alternative(wanted[id(obj)], attempt)
                if alternative is None:
                    refused.append((obj, error))
                else:
                    wanted[id(alternative)] = wanted[id(obj)]
                    tried.append(alternative)
                    retries.append((obj, alternative))
            if not retries:
                break
            swap = {id(old): new for old, new in retries}
            self.entries = [swap.get(id(e), e) for e in self.entries]
            await self._save()  # write-ahead: the alternatives are journaled before they are sent
            failed = await _guarded(kind.create, self.nl, list(swap.values()))
            shared = max(shared, len(retries) - len(failed))
            attempt += 1
        if shared:
            log.info("%s: %d %ss share their key with existing ones (another owner's): added behind them, "
                     "the first as %s", self.key, shared, kind.name,
                     next(e for e in self.entries if id(e) in wanted and wanted[id(e)] is not e))
        return refused

    async def learn(self, old: KernelObject, new: KernelObject) -> None:
        """The kernel told us more of an object's identity (a link's ifindex): journal it."""
        self.entries = [new if e is old else e for e in self.entries]
        await self._save()

    async def forget(self, objs: list[KernelObject]) -> None:
        """Someone else removed these from the kernel: drop them, no kernel call."""
        gone = {id(o) for o in objs}
        self.entries = [e for e in self.entries if id(e) not in gone]
        await self._save()

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
        await self.journal.write(self.key, self.entries + [new for _, new in pairs])
        errors: list[Exception] = []
        swapped = {}
        for kind, group in groupby(pairs, lambda p: kinds.of(p[0])):
            group = list(group)
            failed = await _guarded(kind.remove, self.nl, [old for old, _ in group])
            kept = {id(obj) for obj, _ in failed}
            errors += [e for _, e in failed]
            swapped.update((id(old), new) for old, new in group if id(old) not in kept)
        self.entries = [swapped.get(id(e), e) for e in self.entries]
        added = list(swapped.values())
        for kind, group in groupby(added, kinds.of):
            failed = await _guarded(kind.create, self.nl, list(group))
            refused = {id(obj) for obj, _ in failed}
            self.entries = [e for e in self.entries if id(e) not in refused]
            errors += [e for _, e in failed]
        await self._save()
        return errors

    async def ensure(self, objs: list[KernelObject]) -> list[Exception]:
        """Add recorded objects again where the kernel dropped them (link flaps).

        "Exists" is success.  An object the kernel refuses stays recorded:
        a delete of something absent counts as done.
        """
        errors: list[Exception] = []
        for kind, group in groupby(objs, kinds.of):
            failed = await _guarded(kind.create, self.nl, list(group))
            errors += [e for _, e in failed if getattr(e, "errno", None) != EEXIST]
        return errors

    async def undo(self, since: int = 0) -> list[Exception]:
        """Remove entries[since:] in reverse order; gather errors, keep going.

        What the kernel refused to delete leaves the ledger (the owner is
        done with it) but not the journal: it is kept under `key` +
        UNDELETED, which the next start undoes again (registry.recover), so
        a refused delete is retried rather than forgotten.  Never raises
        but for cancellation: a kind that fails outright counts as having
        refused its whole group.
        """
        errors: list[Exception] = []
        undeleted: list[KernelObject] = []
        tail = self.entries[since:]
        for kind, group in groupby(reversed(tail), kinds.of):
            for obj, e in await _guarded(kind.remove, self.nl, list(group)):
                log.warning("teardown of %s: %s", self.key, e)
                errors.append(e)
                undeleted.insert(0, obj)  # creation order, as journaled
        del self.entries[since:]
        try:
            await self._save()
            if undeleted:
                self.undeleted = undeleted + self.undeleted
                key = self.key if self.key.endswith(UNDELETED) else self.key + UNDELETED
                await self.journal.write(key, self.undeleted)
        except OSError as e:  # the journal's disk: the kernel part is done all the same
            log.error("teardown of %s: journal: %s", self.key, e)
            errors.append(e)
        return errors

    async def _save(self) -> None:
        # An empty ledger has no journal file: nothing to recover.
        if self.entries:
            await self.journal.write(self.key, self.entries)
        else:
            await self.journal.remove(self.key)


async def _guarded(method, nl, objs: list) -> list[tuple[KernelObject, Exception]]:
    """A kind's create/remove; if it fails outright (the netlink socket is
    gone), every object of the call counts as refused with that error."""
    try:
        return await method(nl, objs)
    except Exception as e:
        log.error("%s of %d objects failed: %s", method.__name__, len(objs), e)
        return [(obj, e) for obj in objs]
