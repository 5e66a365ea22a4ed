"""The content of an nftables table as plain values, and the batch that installs it.

A `TableContent` is what a table should hold: named counters and chains,
each chain with its rules in libnftables' JSON vocabulary (the small
builders below; `man libnftables-json`).  Planners (netcfg/leak/rules.py,
later split tunnelling) return one each; `merge` puts them in one table.

`replace_commands` is the one transaction that makes a table hold exactly
a content, whatever it held before (kernel/nft.py runs it):

    add table            (no-op if it exists)
    add counter ...      (an existing named counter keeps its values)
    add chain ...        (no-op if it exists; a base chain's policy is updated)
    flush table          (every rule of the table, in this transaction)
    delete chain ...     (chains the content no longer has, or whose hook changed)
    add chain ...        (those whose hook changed, again)
    add rule ...
    delete counter ...   (counters the content no longer has)

nf_tables applies a batch as one transaction: packets see the old rules or
the new ones, never a table without rules.  Base chains are kept rather
than deleted and re-added, so their hooks stay registered throughout and
drop counters survive every replace.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

# -- the JSON vocabulary (libnftables-json(5)) ---------------------------
ACCEPT = {"accept": None}
DROP = {"drop": None}


def meta(key: str) -> dict:
    return {"meta": {"key": key}}


def payload(protocol: str, fieldname: str) -> dict:
    return {"payload": {"protocol": protocol, "field": fieldname}}


def match(left: dict, right, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def one_or_set(values: Iterable) -> object:
    """A single value as itself, several as an anonymous set."""
    values = list(values)
    return values[0] if len(values) == 1 else {"set": values}


def prefix(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> object:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def counter(name: str) -> dict:
    """A reference to a named counter of the same table."""
    return {"counter": name}


def jump(chain: str) -> dict:
    return {"jump": {"target": chain}}


# -- the content ---------------------------------------------------------
@dataclass(frozen=True)
class Hook:
    """What makes a chain a base chain."""

    type: str  # filter, route, nat
    hook: str  # output, forward, postrouting...
    prio: int
    policy: str = "accept"

    def json(self) -> dict:
        return {"type": self.type, "hook": self.hook, "prio": self.prio, "policy": self.policy}

    def same_attachment(self, kernel: dict) -> bool:
        """Whether an existing chain (`list table` JSON) hangs at the same place."""
        return (kernel.get("type"), kernel.get("hook"), kernel.get("prio")) == (self.type, self.hook, self.prio)


@dataclass(frozen=True)
class Rule:
    expr: tuple  # of JSON expression/statement dicts
    comment: str = ""


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Rule, ...] = ()
    hook: Hook | None = None  # None: a regular chain (reached by jump)


@dataclass(frozen=True)
class TableContent:
    chains: tuple[Chain, ...] = ()
    counters: tuple[str, ...] = ()

    def merge(self, other: "TableContent") -> "TableContent":
        names = [c.name for c in self.chains + other.chains] + list(self.counters + other.counters)
        clash = {n for n in names if names.count(n) > 1}
        if clash:
            raise ValueError(f"two parts of one table define {sorted(clash)}")
        return TableContent(self.chains + other.chains, self.counters + other.counters)

    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains)


@dataclass(frozen=True)
class Present:
    """What a table holds now, as far as a replace needs to know (from `list table`)."""

    chains: dict[str, dict] = field(default_factory=dict)  # name -> its JSON (type/hook/prio for base chains)
    counters: frozenset[str] = frozenset()

    @classmethod
    def of(cls, content: TableContent) -> "Present":
        """What a table holds after a replace with `content`."""
        chains = {c.name: c.hook.json() if c.hook else {} for c in content.chains}
        return cls(chains, frozenset(content.counters))

    @classmethod
    def from_listing(cls, items: list[dict]) -> "Present":
        chains = {i["chain"]["name"]: i["chain"] for i in items if "chain" in i}
        counters = frozenset(i["counter"]["name"] for i in items if "counter" in i)
        return cls(chains, counters)


def replace_commands(family: str, table: str, content: TableContent, present: Present) -> list[dict]:
    """The one batch that leaves the table holding exactly `content` (module doc)."""
    ref = {"family": family, "table": table}
    recreate = [c for c in content.chains if c.name in present.chains
                and not _same_kind(c, present.chains[c.name])]
    stale = set(present.chains) - {c.name for c in content.chains}
    cmds: list[dict] = [{"add": {"table": {"family": family, "name": table}}}]
    cmds += [{"add": {"counter": {**ref, "name": name}}} for name in content.counters]
    cmds += [_add_chain(ref, c) for c in content.chains if c not in recreate]
    cmds.append({"flush": {"table": {"family": family, "name": table}}})
    cmds += [{"delete": {"chain": {**ref, "name": name}}} for name in sorted(stale)]
    cmds += [{"delete": {"chain": {**ref, "name": c.name}}} for c in recreate]
    cmds += [_add_chain(ref, c) for c in recreate]
    for c in content.chains:
        for r in c.rules:
            rule = {**ref, "chain": c.name, "expr": list(r.expr)}
            if r.comment:
                rule["comment"] = r.comment
            cmds.append({"add": {"rule": rule}})
    cmds += [{"delete": {"counter": {**ref, "name": name}}}
             for name in sorted(present.counters - set(content.counters))]
    return cmds


def delete_commands(family: str, table: str) -> list[dict]:
    return [{"delete": {"table": {"family": family, "name": table}}}]


def _add_chain(ref: dict, chain: Chain) -> dict:
    spec = {**ref, "name": chain.name}
    if chain.hook is not None:
        spec.update(chain.hook.json())
    return {"add": {"chain": spec}}


def _same_kind(chain: Chain, kernel: dict) -> bool:
    if chain.hook is None:
        return "hook" not in kernel
    return chain.hook.same_attachment(kernel)
