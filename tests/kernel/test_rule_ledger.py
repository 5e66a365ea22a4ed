"""Rules through the ledger, and the ledger's replace/ensure, against the real kernel."""

from __future__ import annotations

import errno
import socket

import pytest

from netcfg.errors import KernelRefused
from netcfg.kernel.ledger import Ledger
from netcfg.kernel.route import Route
from netcfg.kernel.rule import family_rules
from netcfg.state import Journal

pytestmark = pytest.mark.asyncio
MARK, TABLE = 0x4F56, 70000


def journal_of(tmp_path, key: str):
    return Journal(tmp_path).read(key)


async def rules(netns) -> list[tuple]:
    out = []
    for fam in ("-4", "-6"):
        for r in await netns.ip_json(fam, "rule", "show"):
            if "fwmark" in r:
                out.append((fam, r["priority"], r["fwmark"], r["table"], r.get("protocol")))
    return out


async def test_rules_apply_undo_and_refuse_a_twin(kernel_netns, nl, tmp_path):
    ledger = Ledger("somark", nl, Journal(tmp_path))
    await ledger.apply(family_rules(100, MARK, TABLE))
    assert sorted(await rules(kernel_netns)) == [("-4", 100, "0x4f56", "70000", "111"),
                                                 ("-6", 100, "0x4f56", "70000", "111")]
    assert [type(o).__name__ for o in journal_of(tmp_path, "somark")] == ["Rule", "Rule"]

    twin = Ledger("twin", nl, Journal(tmp_path))
    with pytest.raises(KernelRefused) as err:
        await twin.apply(family_rules(100, MARK, TABLE)[:1])
    assert err.value.errno == errno.EEXIST
    assert journal_of(tmp_path, "twin") is None  # nothing recorded: nothing to recover

    assert await ledger.undo() == []
    assert await rules(kernel_netns) == []
    assert journal_of(tmp_path, "somark") is None
    ledger.entries = family_rules(100, MARK, TABLE)
    assert await ledger.undo() == []  # already gone counts as done


async def test_replace_and_ensure(kernel_netns, kernel_tun, nl, tmp_path):
    ledger = Ledger("excl", nl, Journal(tmp_path))
    old = Route(socket.AF_INET, "198.18.5.0", 24, kernel_tun.index, "10.200.0.1")
    new = Route(socket.AF_INET, "198.18.5.0", 24, kernel_tun.index, "10.200.0.3")
    table = Route(socket.AF_INET, "0.0.0.0", 0, kernel_tun.index, "10.200.0.1", table=TABLE)
    await ledger.apply([old, table])

    assert await ledger.replace([(old, new)]) == []
    assert ledger.entries == [new, table]  # in place: teardown order unchanged
    shown = await kernel_netns.ip_json("-4", "route", "show", "proto", "111")
    assert [(r["dst"], r["gateway"]) for r in shown] == [("198.18.5.0/24", "10.200.0.3")]
    assert [o.gateway for o in journal_of(tmp_path, "excl")] == ["10.200.0.3", "10.200.0.1"]

    # Dropped behind our back (a link flap flushes IPv4 routes): ensure puts it back.
    await kernel_netns.ip_async("route", "del", "198.18.5.0/24")
    assert await ledger.ensure([new, table]) == []  # the table route exists: fine
    shown = await kernel_netns.ip_json("-4", "route", "show", "proto", "111")
    assert [r["gateway"] for r in shown] == ["10.200.0.3"]

    assert await ledger.undo() == []
    assert await kernel_netns.ip_json("-4", "route", "show", "table", "all", "proto", "111") == []


async def test_undo_goes_on_past_a_refused_delete_and_journals_it(kernel_netns, kernel_tun, nl, tmp_path):
    """A delete the kernel refuses (here EINVAL: an IPv4 prefix of 33, no
    fake) does not stop the rest of the teardown, and stays journaled
    under KEY.undeleted for the next start, which does not nest the suffix."""
    ledger = Ledger("dev", nl, Journal(tmp_path))
    ok = [Route(socket.AF_INET, f"198.18.{i}.0", 24, kernel_tun.index, "10.200.0.1") for i in (1, 2)]
    await ledger.apply(ok)
    bogus = Route(socket.AF_INET, "198.18.9.0", 33, kernel_tun.index, "10.200.0.1")
    ledger.entries.insert(1, bogus)  # between the two: the undo must go past it

    errors = await ledger.undo()
    assert [e.errno for e in errors] == [errno.EINVAL]
    assert await kernel_netns.ip_json("-4", "route", "show", "proto", "111") == []
    assert ledger.entries == [] and journal_of(tmp_path, "dev") is None
    assert [o.prefix for o in journal_of(tmp_path, "dev.undeleted")] == [33]

    # What the next start does (registry.recover): undo the journal again.
    found = Journal(tmp_path).leftovers()
    assert list(found) == ["dev.undeleted"]
    retry = Ledger("dev.undeleted", nl, Journal(tmp_path))
    retry.entries = found["dev.undeleted"]
    assert len(await retry.undo()) == 1
    assert sorted(p.name for p in tmp_path.glob("ledger-*")) == ["ledger-dev.undeleted.json"]
