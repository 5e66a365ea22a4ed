"""The journal's encoding: each run of one kind as columns (written by the
kind itself, kernel/kinds.py), and a round trip back to equal kernel
objects in their order; journals of the earlier formats still decode."""

import asyncio
import json
import socket

import pytest

from netcfg.kernel.address import AddressOnLink, TunnelAddress
from netcfg.kernel.link import TunLink
from netcfg.kernel.route import Route
from netcfg.kernel.rule import Rule
from netcfg.state import Journal, decode_all, encode_all

OBJECTS = [
    TunLink(7, "tun0"),
    AddressOnLink(7, TunnelAddress("10.8.0.2", 24, "10.8.0.1", False)),
    Route(socket.AF_INET, "198.18.0.0", 32, 7, "10.8.0.1", None),
    Route(socket.AF_INET6, "2001:db8::", 48, 7, None, 50, table=1000, proto=111),
    Rule(socket.AF_INET, 100, 0x4F56, 1000),
]


@pytest.mark.asyncio
async def test_journal_round_trip(tmp_path):
    journal = Journal(tmp_path)
    try:
        await journal.write("dev.1", OBJECTS)
        assert journal.leftovers() == {"dev.1": OBJECTS}
        await journal.remove("dev.1")
        assert journal.leftovers() == {}
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary left behind
    finally:
        journal.close()


def test_keys_are_never_reused(tmp_path):
    """Two ledgers of one label, in one run or in two, never share a file."""
    first, second = Journal(tmp_path), Journal(tmp_path)
    try:
        keys = [first.new_key("1234_dev"), first.new_key("1234_dev"), second.new_key("1234_dev")]
        assert len(set(keys)) == 3 and all(k.startswith("1234_dev.") for k in keys)
    finally:
        first.close()
        second.close()


@pytest.mark.asyncio
async def test_runs_are_columns_and_order_is_kept(tmp_path):
    routes = [Route(socket.AF_INET, f"198.18.{i}.0", 24, 7, "10.8.0.1", i or None) for i in range(3)]
    address6 = AddressOnLink(7, TunnelAddress("fd00::2", 64, "", True))
    objects = [OBJECTS[0], *routes[:2], address6, routes[2], OBJECTS[3]]
    items = json.loads(json.dumps(encode_all(objects)))
    assert [(i["kind"], i["count"]) for i in items] == [("link", 1), ("route", 2), ("address", 1), ("route", 2)]
    # A field the run shares is written once; the others as lists.
    assert items[1]["columns"]["gateway"] == "10.8.0.1" and items[1]["columns"]["dst"] == ["198.18.0.0", "198.18.1.0"]
    assert items[2]["columns"]["address"] == "fd00::2"  # an address's columns are flat
    assert decode_all(items) == objects
    journal = Journal(tmp_path)
    try:
        await journal.write("dev.2", objects)
        assert journal.read("dev.2") == objects
        assert journal.leftovers() == {"dev.2": objects}
        assert journal.read("nothing") is None
    finally:
        journal.close()


def test_journals_of_the_earlier_formats_still_decode():
    """A crashed run of the previous version left one dict per object (the
    address nested) and runs of routes as rows: the next start undoes them."""
    old = [
        {"kind": "link", "ifindex": 7, "ifname": "tun0", "link_kind": "tun", "borrowed": False},
        {"kind": "address", "ifindex": 7,
         "address": {"address": "10.8.0.2", "prefix": 24, "gateway": "10.8.0.1", "ipv6": False}},
        {"kind": "routes", "fields": ["family", "dst", "prefix", "oif", "gateway", "metric", "table", "proto"],
         "rows": [[2, "198.18.0.0", 32, 7, "10.8.0.1", None, 254, 111],
                  [10, "2001:db8::", 48, 7, None, 50, 1000, 111]]},
        {"kind": "rule", "family": 2, "priority": 100, "fwmark": 0x4F56, "table": 1000,
         "fwmask": 0xFFFFFFFF, "proto": 111},
    ]
    assert decode_all(old) == OBJECTS


@pytest.mark.asyncio
async def test_the_journal_becomes_durable_when_quiet_or_closed(tmp_path, monkeypatch):
    """The fsyncs of a write wait until the journal is quiet (they once cost
    an Establish 5-10 %): visible at once, durable soon after, and closing
    makes everything written durable."""
    import os

    import netcfg.state as state

    synced: list[int] = []
    real = state.sync_deferred
    monkeypatch.setattr(state, "sync_deferred", lambda fds, d: (synced.extend(fds), real(fds, d)))
    monkeypatch.setattr(state, "SYNC_WHEN_QUIET", 0.05)
    journal = Journal(tmp_path)
    try:
        await journal.write("a", OBJECTS)
        assert journal.read("a") == OBJECTS and synced == []  # visible before durable
        await journal.write("b", OBJECTS)
        while len(synced) < 2:  # the timer of the last write: both in one pass
            await asyncio.sleep(0.01)
        await journal.write("c", OBJECTS)
    finally:
        journal.close()
    assert len(synced) == 3
    assert not [fd for fd in os.listdir("/proc/self/fd") if int(fd) in synced and os.path.exists(
        f"/proc/self/fd/{fd}") and "ledger-" in os.readlink(f"/proc/self/fd/{fd}")]
