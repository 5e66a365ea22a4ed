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
    if type(obj) is Route:
        # Same dict as asdict(), but a Route's fields are all scalars, and
        # asdict's recursive copy cost ~14 us a route: with 10,000 routes,
        # 140 ms, half of Establish (bench/README.md).
        return {"kind": "route", **dict(zip(_ROUTE_FIELDS, _route_values(obj)))}
    return {"kind": _NAMES[type(obj)], **dataclasses.asdict(obj)}


def decode(data: dict):
    data = dict(data)
    cls = KINDS[data.pop("kind")]
    if cls is AddressOnLink:
        data["address"] = TunnelAddress(**data["address"])
    return cls(**data)


class Journal:
    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _file(self, key: str) -> Path:
        return self.dir / f"ledger-{_SAFE.sub('_', key)}.json"

    def write(self, key: str, objects: list) -> None:
        path = self._file(key)
        tmp = path.with_suffix(".tmp")
        payload = json.dumps({"key": key, "objects": [encode(o) for o in objects]}, separators=(",", ":"))
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(payload)
        os.replace(tmp, path)

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
                data = json.loads(path.read_text(encoding="utf-8"))
                found[data["key"]] = [decode(o) for o in data["objects"]]
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.error("unreadable journal %s (%s); moved aside", path, e)
                path.rename(path.with_suffix(".broken"))
        return found


class NullJournal:
    """For ledgers that must never survive the process (tests of the kernel layer)."""

    def write(self, key, objects) -> None:
        pass

    def remove(self, key) -> None:
        pass
