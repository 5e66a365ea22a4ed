"""A kernel object kind applies, removes and (de)serialises itself; the
ledger and the journal only call it (issue 15, item 6).  The kind here is
written for the test, in memory, exactly as a new module (an nftables
table, a cgroup) would be: registered once, and nothing else changes."""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass, replace

import pytest

from netcfg.errors import KernelRefused
from netcfg.kernel import kinds
from netcfg.kernel.ledger import Ledger
from netcfg.state import NullJournal, decode_all, encode_all


@dataclass(frozen=True, slots=True)
class Table:
    """A stand-in kernel object: a named table with a priority slot."""

    name: str
    priority: int = 0


class FakeKernel:
    def __init__(self) -> None:
        self.tables: set[tuple[str, int]] = set()
        self.refuse_delete: set[str] = set()


class TableKind(kinds.Kind[Table]):
    name, type = "test-table", Table

    async def create(self, kernel: FakeKernel, objs):
        failed = []
        for t in objs:
            if any(p == t.priority for _, p in kernel.tables):
                failed.append((t, KernelRefused("add", t, errno.EEXIST)))
            else:
                kernel.tables.add((t.name, t.priority))
        return failed

    async def remove(self, kernel: FakeKernel, objs):
        failed = []
        for t in objs:
            if t.name in kernel.refuse_delete:
                failed.append((t, KernelRefused("delete", t, errno.EBUSY)))
            kernel.tables.discard((t.name, t.priority))
        return failed

    def alternative(self, wanted: Table, attempt: int):
        return replace(wanted, priority=wanted.priority + attempt) if attempt < 3 else None


kinds.register(TableKind())


@pytest.mark.asyncio
async def test_a_new_kind_goes_through_ledger_and_journal_unchanged():
    kernel = FakeKernel()
    ledger = Ledger("t", kernel, NullJournal())
    await ledger.apply([Table("a"), Table("b", 5)])
    assert kernel.tables == {("a", 0), ("b", 5)}
    assert decode_all(json.loads(json.dumps(encode_all(ledger.entries)))) == ledger.entries
    assert await ledger.undo() == [] and kernel.tables == set()


@pytest.mark.asyncio
async def test_a_taken_key_falls_back_to_the_kinds_alternatives():
    """EEXIST: the kind's next alternative is journaled and tried; the
    ledger then holds what exists, so the undo removes exactly that."""
    kernel = FakeKernel()
    kernel.tables = {("admin", 0), ("other", 1)}
    ledger = Ledger("t", kernel, NullJournal())
    await ledger.apply([Table("mine", 0)])
    assert ledger.entries == [Table("mine", 2)]
    await ledger.undo()
    assert kernel.tables == {("admin", 0), ("other", 1)}


@pytest.mark.asyncio
async def test_when_the_alternatives_run_out_the_refusal_stands_and_nothing_stays_listed():
    kernel = FakeKernel()
    kernel.tables = {("x", 0), ("y", 1), ("z", 2)}
    ledger = Ledger("t", kernel, NullJournal())
    with pytest.raises(KernelRefused) as err:
        await ledger.apply([Table("mine", 0), Table("later", 9)])
    assert err.value.errno == errno.EEXIST
    # What was refused is not the ledger's (an undo must not touch it); what was made stays, for the rollback.
    assert ledger.entries == [Table("later", 9)] and ("later", 9) in kernel.tables


@pytest.mark.asyncio
async def test_undo_goes_on_past_a_refusal_and_keeps_it_for_the_next_start():
    kernel = FakeKernel()
    journal = RecordingJournal()
    ledger = Ledger("t", kernel, journal)
    await ledger.apply([Table("a"), Table("stuck", 1), Table("c", 2)])
    kernel.refuse_delete = {"stuck"}
    errors = await ledger.undo()
    assert [e.errno for e in errors] == [errno.EBUSY]
    assert journal.files == {"t.undeleted": [Table("stuck", 1)]}


class RecordingJournal:
    def __init__(self) -> None:
        self.files: dict[str, list] = {}

    def new_key(self, label: str) -> str:
        return label

    async def write(self, key, objects) -> None:
        self.files[key] = decode_all(json.loads(json.dumps(encode_all(objects))))

    async def remove(self, key) -> None:
        self.files.pop(key, None)


def test_a_kind_is_registered_once():
    with pytest.raises(ValueError):
        kinds.register(TableKind())
    assert kinds.named("test-table").type is Table
    with pytest.raises(ValueError):
        kinds.named("no-such-kind")
