"""The write-ahead journal in --state-dir: one JSON file per ledger.

A ledger's file lists every kernel object it may have created; the service
writes it before each change (atomically: temporary file + rename) and
removes it when the ledger is empty.  At start, files left behind by a
crashed run are undone in reverse (kernel/ledger.py) and deleted.
"""

from __future__ import annotations

import json
import logging
import os
import re
from itertools import groupby
from pathlib import Path

from .kernel import kinds

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


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

    def _file(self, key: str) -> Path:
        return self.dir / f"ledger-{_SAFE.sub('_', key)}.json"

    def write(self, key: str, objects: list) -> None:
        path = self._file(key)
        tmp = path.with_suffix(".tmp")
        payload = json.dumps({"key": key, "objects": encode_all(objects)}, separators=(",", ":"))
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(payload)
        os.replace(tmp, path)

    def read(self, key: str) -> list | None:
        """The objects journaled under `key`, None if there is no file."""
        try:
            return _load(self._file(key))[1]
        except FileNotFoundError:
            return None

    def remove(self, key: str) -> None:
        try:
            self._file(key).unlink()
        except FileNotFoundError:
            pass

    def leftovers(self) -> dict[str, list]:
        """Ledgers a previous run did not finish (it crashed or was killed)."""
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

    def write(self, key, objects) -> None:
        pass

    def remove(self, key) -> None:
        pass
