"""The write-ahead journal in --state-dir: one JSON file per ledger.

A ledger's file lists every kernel object it may have created; the service
writes it before each change and removes it when the ledger is empty.  At
start, files left behind by a crashed run are undone in reverse
(kernel/ledger.py) and deleted.

Writes are atomic (atomic_file.py: temporary file, rename) and run,
encoding included, on one writer thread, in the order they were asked
for; the event loop only awaits them (bench/journal.py measures what
that costs the loop).  They are made durable (fsync of the file and of
the directory) once the journal is quiet (`Journal.write`).

Keys are unique per ledger and never reused (`new_key`: a label, this
run's id, a counter), so the release of one ledger can never remove the
file of another, not even of one that a later run made.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from pathlib import Path

from .atomic_file import TEMP_SUFFIX, sync_deferred, write_atomically
from .kernel import kinds

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
SYNC_WHEN_QUIET = 0.5  # seconds without a journal write before the fsyncs run (performance, not safety)


def encode_all(objects: list) -> list:
    """The journal's list: one item per run of objects of one kind, in
    order (teardown walks it in reverse), each written by its kind
    (kernel/kinds.py) as columns: {"kind", "count", "columns": {field: a
    list of values, or one value that all share}}.

    Why columns: the objects of a run share most fields (10,000 routes of
    one tunnel share family, device, gateway, table, protocol), so a column
    is mostly one value; that is 3x smaller and 2x cheaper to build and
    dump than one row per object, and ~5x cheaper than a dict per object
    (bench/journal.py).
    """
    out: list = []
    for kind, run in groupby(objects, kinds.of):
        rows = kind.values(list(run))
        columns = {}
        for name, column in zip(kind.fields, zip(*rows)):
            first = column[0]
            columns[name] = first if column.count(first) == len(column) else list(column)
        out.append({"kind": kind.name, "count": len(rows), "columns": columns})
    return out


def decode_all(items: list) -> list:
    out: list = []
    for item in items:
        kind = kinds.named("route" if item["kind"] == "routes" else item["kind"])
        if "columns" in item:
            count, columns = item["count"], item["columns"]
            lists = [c if isinstance(c, list) else [c] * count for c in (columns[f] for f in kind.fields)]
            out.extend(map(kind.build, zip(*lists)))
        elif "rows" in item:  # runs of routes as written before the columns
            out.extend(kind.from_fields(dict(zip(item["fields"], row))) for row in item["rows"])
        else:  # one object per item, as written before the columns
            out.append(kind.from_fields({k: v for k, v in item.items() if k != "kind"}))
    return out


class Journal:
    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.run = secrets.token_hex(4)  # this run's part of every key
        self._serial = itertools.count(1)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._unsynced: list[int] = []  # fds of renamed files not yet fsync'ed (the writer thread's)
        self._sync_handle: asyncio.TimerHandle | None = None

    def new_key(self, label: str) -> str:
        """A key no other ledger has, had or will have: `label.RUN.N`."""
        return f"{label}.{self.run}.{next(self._serial)}"

    def _file(self, key: str) -> Path:
        return self.dir / f"ledger-{_SAFE.sub('_', key)}.json"

    async def write(self, key: str, objects: list) -> None:
        """Journal `objects` under `key`; returns once the new file is in
        place (visible to the next start after a crash of the service).

        Encoding runs on the writer thread too: it holds the GIL, but the
        interpreter hands it back to the loop every switch interval (5 ms),
        so 10,000 routes no longer stop the loop for their whole encoding.
        The list is copied here; its objects are immutable.  The fsyncs
        wait until the journal has been quiet for SYNC_WHEN_QUIET
        (atomic_file.py: what it lists does not outlive the machine, so only
        a crash of the service must find it, and that needs the rename, not
        the disk; an fsync during an Establish cost it 5-10 %).
        """
        path, payload_of = self._file(key), list(objects)

        def write() -> None:
            payload = json.dumps({"key": key, "objects": encode_all(payload_of)}, separators=(",", ":"))
            write_atomically(path, payload.encode(), defer_sync=self._unsynced)

        await self._run(write)
        self._sync_later()

    async def remove(self, key: str) -> None:
        await self._run(self._file(key).unlink, True)  # missing_ok

    async def _run(self, func, *args) -> None:
        # One thread: writes, removals and syncs land in the order asked.
        await asyncio.get_running_loop().run_in_executor(self._writer, func, *args)

    def _sync_later(self) -> None:
        loop = asyncio.get_running_loop()
        if self._sync_handle is not None:
            self._sync_handle.cancel()
        self._sync_handle = loop.call_later(SYNC_WHEN_QUIET, self._sync_now)

    def _sync_now(self) -> None:
        self._sync_handle = None
        self._writer.submit(self._sync_pending)

    def _sync_pending(self) -> None:
        """On the writer thread: make the renamed files durable."""
        fds, self._unsynced[:] = list(self._unsynced), []
        if not fds:
            return
        try:
            sync_deferred(fds, self.dir)
        except OSError as e:
            log.error("journal in %s: could not make it durable: %s", self.dir, e)

    async def sync(self) -> None:
        """Make what was written durable now, without waiting for quiet."""
        if self._sync_handle is not None:
            self._sync_handle.cancel()
            self._sync_handle = None
        await self._run(self._sync_pending)

    def close(self) -> None:
        """Wait for the writes asked for and make them durable, then stop the writer thread."""
        if self._sync_handle is not None:
            self._sync_handle.cancel()
            self._sync_handle = None
        self._writer.submit(self._sync_pending)
        self._writer.shutdown(wait=True)

    def read(self, key: str) -> list | None:
        """The objects journaled under `key`, None if there is no file."""
        try:
            return _load(self._file(key))[1]
        except FileNotFoundError:
            return None

    def leftovers(self) -> dict[str, list]:
        """Ledgers a previous run did not finish (it crashed or was killed).

        Temporaries of writes it did not finish are deleted: their rename
        never happened, so the file they were to replace is what counts.
        """
        for tmp in self.dir.glob(f".ledger-*{TEMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
        found = {}
        for path in sorted(self.dir.glob("ledger-*.json")):
            try:
                key, objects = _load(path)
                found[key] = objects
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.error("unreadable journal %s (%s); moved aside", path, e)
                path.rename(path.with_suffix(".broken"))
        return found


def _load(path: Path) -> tuple[str, list]:
    """One journal file: its ledger key and objects."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return data["key"], decode_all(data["objects"])


class NullJournal:
    """For ledgers that must never survive the process (tests of the kernel layer)."""

    def new_key(self, label: str) -> str:
        return label

    async def write(self, key, objects) -> None:
        pass

    async def remove(self, key) -> None:
        pass
