"""The write-ahead journal in --state-dir: one JSON file per ledger.

A ledger's file lists every kernel object it may have created; the service
writes it before each change (atomically: temporary file + rename) and
removes it when the ledger is empty.  At start, files left behind by a
crashed run are undone in reverse (kernel/ledger.py) and deleted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import operator
import os
import re
from itertools import groupby
from pathlib import Path

from .kernel.address import AddressOnLink, TunnelAddress
from .kernel.link import TunLink
from .kernel.route import Route
from .kernel.rule import Rule

log = logging.getLogger(__name__)

KINDS = {"link": TunLink, "address": AddressOnLink, "route": Route, "rule": Rule}
_NAMES = {cls: name for name, cls in KINDS.items()}
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_ROUTE_FIELDS = tuple(f.name for f in dataclasses.fields(Route))
_route_values = operator.attrgetter(*_ROUTE_FIELDS)


def encode(obj) -> dict:
    return {"kind": _NAMES[type(obj)], **dataclasses.asdict(obj)}


def encode_all(objects: list) -> list:
    """The journal's list: one dict per object, except that each run of
    routes is one {"kind": "routes", "rows": [[field values]...]}.

    Why rows: a route is all scalars, and a list of value lists is ~4x
    cheaper to build and dump than one dict per route (10,000 routes:
    ~13 ms instead of ~50 ms of the event loop at every Establish;
    bench/README.md).  Order is kept: teardown walks it in reverse.
    """
    out: list = []
    for is_route, run in groupby(objects, lambda o: type(o) is Route):
        if is_route:
            out.append({"kind": "routes", "fields": _ROUTE_FIELDS, "rows": list(map(_route_values, run))})
        else:
            out.extend(map(encode, run))
    return out


def decode(data: dict):
    data = dict(data)
    cls = KINDS[data.pop("kind")]
    if cls is AddressOnLink:
        data["address"] = TunnelAddress(**data["address"])
    return cls(**data)


def decode_all(items: list) -> list:
    out = []
    for item in items:
        if item.get("kind") == "routes":
            fields = item["fields"]
            out.extend(Route(**dict(zip(fields, row))) for row in item["rows"])
        else:
            out.append(decode(item))
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
