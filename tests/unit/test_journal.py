"""The journal's encoding: dataclasses.asdict per object (runs of routes
as rows), and a round trip back to equal kernel objects in their order."""

import dataclasses
import json
import socket

import pytest

from netcfg.kernel.address import AddressOnLink, TunnelAddress
from netcfg.kernel.link import TunLink
from netcfg.kernel.route import Route
from netcfg.state import Journal, decode, encode, encode_all

OBJECTS = [
    TunLink(7, "tun0"),
    AddressOnLink(7, TunnelAddress("10.8.0.2", 24, "10.8.0.1", False)),
    Route(socket.AF_INET, "198.18.0.0", 32, 7, "10.8.0.1", None),
    Route(socket.AF_INET6, "2001:db8::", 48, 7, None, 50, table=1000, proto=111),
]


@pytest.mark.parametrize("obj", OBJECTS, ids=str)
def test_encode_is_asdict_plus_kind(obj):
    data = encode(obj)
    assert list(data)[0] == "kind"
    assert {k: v for k, v in data.items() if k != "kind"} == dataclasses.asdict(obj)
    assert decode(json.loads(json.dumps(data))) == obj


def test_journal_round_trip(tmp_path):
    journal = Journal(tmp_path)
    journal.write("dev.1", OBJECTS)
    assert journal.leftovers() == {"dev.1": OBJECTS}
    journal.remove("dev.1")
    assert journal.leftovers() == {}


def test_runs_of_routes_are_rows_and_order_is_kept(tmp_path):
    routes = [Route(socket.AF_INET, f"198.18.{i}.0", 24, 7, "10.8.0.1", i or None) for i in range(3)]
    rule_like = AddressOnLink(7, TunnelAddress("fd00::2", 64, "", True))
    objects = [OBJECTS[0], *routes[:2], rule_like, routes[2], OBJECTS[3]]
    items = json.loads(json.dumps(encode_all(objects)))
    assert [i["kind"] for i in items] == ["link", "routes", "address", "routes"]
    assert len(items[1]["rows"]) == 2 and len(items[3]["rows"]) == 2  # OBJECTS[3] is a route too
    journal = Journal(tmp_path)
    journal.write("dev.2", objects)
    assert journal.read("dev.2") == objects
    assert journal.leftovers() == {"dev.2": objects}
    assert journal.read("nothing") is None
