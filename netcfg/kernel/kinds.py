"""Kernel object kinds: each one creates, removes and (de)serialises itself.

A kind is one module: a frozen value type whose identity is the kernel's
own key, and a `Kind` that knows how to create and remove a batch of them,
how to write one into the journal and read it back, and what to try when
the kernel says its key is taken.  The kind registers itself once, with
`register`, when its module is imported; the ledger (kernel/ledger.py) and
the journal (state.py) then only call its methods and never name a kind.

Adding a kind (an nftables table, a cgroup) is writing that one module and
adding its module name to BUILTIN if it lives here, or importing it before
the service's journal recovery if it lives elsewhere.
"""

from __future__ import annotations

import dataclasses
import importlib
import operator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# The kinds of kernel/: imported before a journal is read, so that a file
# left by a crashed run can always be decoded.
BUILTIN = ("link", "address", "route", "rule")

_by_type: dict[type, "Kind"] = {}
_by_name: dict[str, "Kind"] = {}


class Kind(Generic[T]):
    """How the ledger handles one type of kernel object.  Subclasses set
    `name` (its journal name, never to change) and `type`, and implement
    `create` and `remove`; the rest has defaults for a flat dataclass."""

    name: str
    type: type

    @property
    def fields(self) -> tuple[str, ...]:
        """The journal's columns; by default the dataclass's fields."""
        return tuple(f.name for f in dataclasses.fields(self.type))

    def values(self, objs: list[T]) -> list[tuple]:
        """Each object as a tuple of `fields`."""
        return list(map(operator.attrgetter(*self.fields), objs))

    def build(self, values: tuple) -> T:
        return self.type(*values)

    def from_fields(self, fields: dict) -> T:
        """An object from named fields (a journal written with other columns)."""
        return self.type(**fields)

    async def create(self, nl, objs: list[T]) -> list[tuple[T, Exception]]:
        """Create `objs` in order; the refused ones with their errors (KernelRefused)."""
        raise NotImplementedError

    async def remove(self, nl, objs: list[T]) -> list[tuple[T, Exception]]:
        """Delete `objs`; "already gone" is done.  Goes on past a refusal, returns the refused ones."""
        raise NotImplementedError

    def alternative(self, wanted: T, attempt: int) -> T | None:
        """After the kernel answered "exists" to `wanted`: the `attempt`-th
        other object that would serve instead (a route at the next metric),
        or None: the refusal stands."""
        return None

    def observed_key(self, obj: T) -> tuple | None:
        """How rtnetlink notices and dumps name this object (kernel/reconcile.py),
        None for a kind they do not report."""
        return None

    def link_of(self, obj: T) -> int | None:
        """The ifindex of the link this object goes away with, if any."""
        return None


def register(kind: Kind) -> Kind:
    if kind.name in _by_name and _by_name[kind.name] is not kind:
        raise ValueError(f"kernel object kind {kind.name!r} is registered twice")
    _by_type[kind.type] = _by_name[kind.name] = kind
    return kind


def of(obj: Any) -> Kind:
    """The kind of a kernel object (a KeyError names an unregistered type)."""
    return _by_type[type(obj)]


def named(name: str) -> Kind:
    """The kind journaled as `name`."""
    if name not in _by_name:
        load_builtin()
    try:
        return _by_name[name]
    except KeyError:
        raise ValueError(f"unknown kernel object kind {name!r}") from None


def load_builtin() -> None:
    for module in BUILTIN:
        importlib.import_module(f"{__package__}.{module}")
