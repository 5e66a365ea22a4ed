"""Subscriptions, filtering and the pump's hand-made messages (no bus)."""

from __future__ import annotations

import asyncio

import pytest
from dbus_fast import Message, MessageType
from dbus_fast._private.unmarshaller import Unmarshaller

from netcfg.bus import pump as pump_module
from netcfg.bus.pump import SignalPump
from netcfg.bus.signals import Subscriptions
from netcfg.errors import InvalidArgument, NotAuthorized, NotFound
from netcfg.events import Change, ChangeType, route_details

PATH = "/net/openvpn/v3/netcfg/42_dev"


class FakeBus:
    def __init__(self) -> None:
        self.serial = 0

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial


def unmarshal(data: bytes) -> list[Message]:
    import io

    stream = io.BytesIO(bytes(data))
    out = []
    while stream.tell() < len(data):
        u = Unmarshaller(stream)
        msg = u.unmarshall()
        out.append(msg)
    return out


def test_pump_messages_are_the_librarys_bytes():
    pump = SignalPump(FakeBus())
    body = [16, "tun0", {"ip_version": "4", "subnet": "10.0.0.0", "prefix": "8", "prefix_size": "8", "origin": "x"}]
    pump.push([":1.7", ":1.12345"], PATH, "net.openvpn.v3.netcfg", "NetworkChange", "usa{ss}", body)
    chunk = pump._fill()
    for serial, dest in ((1, ":1.7"), (2, ":1.12345")):
        lib = Message(message_type=MessageType.SIGNAL, destination=dest, path=PATH, interface="net.openvpn.v3.netcfg",
                      member="NetworkChange", signature="usa{ss}", body=body, serial=serial)._marshall(False)
        assert bytes(chunk[:len(lib)]) == bytes(lib)
        chunk = chunk[len(lib):]
    assert not chunk and not pump.events and pump.pending() == 0


def test_pump_bounds_each_destination(monkeypatch, caplog):
    monkeypatch.setattr(pump_module, "MAX_QUEUED", 3)
    pump = SignalPump(FakeBus())
    for i in range(5):
        pump.push([":1.1", ":1.2"] if i < 2 else [":1.1"], PATH, "i.f", "M", "u", [i])
    assert pump.destinations[":1.1"].queued == 3 and pump.destinations[":1.1"].dropped == 2
    assert "signal queue for :1.1 is full" in caplog.text
    pump.forget(":1.2")  # left the bus: its share goes nowhere
    msgs = []
    while pump.events:
        msgs += unmarshal(pump._fill())
    assert [(m.destination, m.body) for m in msgs] == [(":1.1", [0]), (":1.1", [1]), (":1.1", [2])]
    assert "2 events for :1.1 were dropped" in caplog.text


def test_pump_windows_span_chunks(monkeypatch):
    # A window regroups messages by destination; chunks cut through it
    # wherever CHUNK_BYTES falls, so a window's size never makes a chunk
    # (what a method reply may wait behind) longer.
    monkeypatch.setattr(pump_module, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(pump_module, "WINDOW_MESSAGES", 40)
    pump = SignalPump(FakeBus())
    names = [":1.1", ":1.2", ":1.3"]
    for i in range(30):
        pump.push(names, PATH, "i.f", "M", "u", [i])
    assert pump.pending() == 90
    chunks, gone = [], False
    while pump.busy():
        chunks.append(pump._fill())
        if len(chunks) == 3 and not gone:
            pump.forget(":1.3")  # left the bus: nothing more for it, the others go on
            gone = True
    msgs = [m for c in chunks for m in unmarshal(c)]
    assert all(len(c) < 1000 + 100 for c in chunks) and len(chunks) > 5
    assert [m.serial for m in msgs] == list(range(1, len(msgs) + 1))
    per_dest = {n: [m.body[0] for m in msgs if m.destination == n] for n in names}
    assert per_dest[":1.1"] == per_dest[":1.2"] == list(range(30))
    assert per_dest[":1.3"] == list(range(len(per_dest[":1.3"]))) and len(per_dest[":1.3"]) < 30
    # within a window (14 events: 42 messages >= 40), each destination's events come as one run
    assert [(m.destination, m.body[0]) for m in msgs[:28]] == [(n, i) for n in names[:2] for i in range(14)]
    assert pump.pending() == 0 and pump.sent == len(msgs)


class RecordingPump:
    def __init__(self) -> None:
        self.pushed = []

    def push(self, names, path, interface, member, signature, body):
        self.pushed.append((names, path, member, signature, body))

    def forget(self, name):
        pass


def test_filtering_and_origin():
    pump = RecordingPump()
    subs = Subscriptions(pump)
    subs.subscribe(":1.1", 999, ChangeType.ROUTE_ADDED | ChangeType.DEVICE_ADDED)
    subs.subscribe(":1.2", 0, 2047)
    subs.emit(PATH, Change(ChangeType.IPADDR_ADDED, "tun0", {"a": "b"}))
    subs.emit(PATH, Change(ChangeType.ROUTE_ADDED, "tun0", route_details("10.0.0.0", 8, False, ""), origin="external"))
    assert pump.pushed[0] == ([":1.2"], PATH, "NetworkChange", "usa{ss}", [4, "tun0", {"a": "b", "origin": "netcfg"}])
    assert pump.pushed[1][0] == [":1.1", ":1.2"] and pump.pushed[1][4][2]["origin"] == "external"
    subs.drop(":1.2")
    subs.drop(":1.1")
    subs.emit(PATH, Change(ChangeType.DEVICE_ADDED, "tun0"))
    assert len(pump.pushed) == 2  # no one matches: nothing is sent


def test_unsubscribe_rules():
    subs = Subscriptions(RecordingPump())
    with pytest.raises(InvalidArgument, match="must be > 0"):
        subs.subscribe(":1.1", 999, 0)
    with pytest.raises(InvalidArgument, match="must be < 65535"):
        subs.subscribe(":1.1", 999, 65536)
    subs.subscribe(":1.1", 999, 65535)
    subs.subscribe(":1.2", 0, 1)
    assert subs.unsubscribe(":1.1", False, ":1.2") == ":1.1"  # non-root: its own, whatever it names
    with pytest.raises(NotAuthorized):
        subs.unsubscribe(":1.1", False, "")
    with pytest.raises(InvalidArgument, match="Failed to retrieve subscriber"):
        subs.unsubscribe(":1.2", True, "")
    with pytest.raises(NotFound, match="Subscription not found for ':1.9'"):
        subs.unsubscribe(":1.2", True, ":1.9")
    assert subs.unsubscribe(":1.5", True, ":1.2") == ":1.2"
    assert subs.listing() == []


def test_dns_change_details():
    """DNS events (no backend here yet: issue 6): keys and the device rule of spec 8."""
    from netcfg.dns.order import DnsManager

    class Backend:
        name, stage = "stub", "pre"

        async def apply(self, active, changed):
            pass

        async def revert(self, settings, active):
            pass

    dns = DnsManager(Backend())
    settings = dns.new_settings()
    settings.add_servers(["10.8.0.1"])
    settings.add_domains(["vpn.example"])
    added = asyncio.run(dns.enable(settings, "tun0"))
    assert [(c.type, c.device, c.details) for c in added] == [
        (ChangeType.DNS_SERVER_ADDED, "", {"dns_server": "10.8.0.1"}),  # resolv.conf mode: device ""
        (ChangeType.DNS_SEARCH_ADDED, "", {"search_domain": "vpn.example"}),
    ]
    Backend.stage = "post"  # systemd-resolved: the interface name
    removed, errors = asyncio.run(dns.remove(settings))
    assert errors == []
    assert [(c.type, c.device) for c in removed] == [(ChangeType.DNS_SERVER_REMOVED, "tun0"),
                                                    (ChangeType.DNS_SEARCH_REMOVED, "tun0")]
