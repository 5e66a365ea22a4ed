"""Pure parts of the DNS core: validation and bounds, the resolv.conf text, the
crash record's recovery rules (on real files in a temporary directory), and
inotify event parsing.  No namespace, no bus."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import socket
import struct
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from netcfg import inotify
from netcfg.dns import resolv_conf_format as fmt
from netcfg.dns.order import DnsManager
from netcfg.dns.resolv_conf_backup import BACKUP_SUFFIX, RECORD_NAME, MovedAside, Record
from netcfg.dns.settings import (
    MAX_DOMAINS, MAX_SERVERS, ResolverSettings, canonical_domain, canonical_server, server_family_bytes,
)
from netcfg.errors import InvalidArgument

# -- servers and domains --


@pytest.mark.parametrize("text, canonical", [
    ("10.8.0.1", "10.8.0.1"),
    (" 10.8.0.1\n", "10.8.0.1"),
    ("::1", "::1"),
    ("2001:db8::", "2001:db8::"),
    ("2001:0DB8:0000:0000:0000:0000:0000:0000", "2001:db8::"),
    ("FD00:8:0:0::1", "fd00:8::1"),
    ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    ("::FFFF:C000:0201", "::ffff:192.0.2.1"),
    ("2001:db8::192.0.2.1", "2001:db8::c000:201"),
])
def test_server_text_forms(text, canonical):
    assert canonical_server(text) == canonical


@pytest.mark.parametrize("text, needle", [
    ("10.0.0.256", "'10.0.0.256' is not an IP address"),
    ("fe80::1%tun0", "scoped addresses"),
    ("0.0.0.0", "not a unicast address"),
    ("::", "not a unicast address"),
    ("ff02::fb", "not a unicast address"),
    ("1.2.3.4\x00", "\\x00"),
    ("x" * 65, "too long"),
    ("", "is not an IP address"),
])
def test_bad_servers(text, needle):
    with pytest.raises(InvalidArgument) as e:
        canonical_server(text)
    assert needle in str(e.value)


@given(st.ip_addresses(v=6))
def test_every_ipv6_text_form_has_one_canonical_form(ip):
    if ip.is_unspecified or ip.is_multicast:
        return
    forms = {canonical_server(ip.exploded), canonical_server(ip.compressed), canonical_server(ip.exploded.upper())}
    assert len(forms) == 1
    assert ipaddress.ip_address(forms.pop()) == ip


def test_mapped_servers_go_to_the_resolver_as_ipv4():
    assert server_family_bytes("::ffff:192.0.2.1") == (socket.AF_INET, bytes([192, 0, 2, 1]))
    assert server_family_bytes("2001:db8::1") == (socket.AF_INET6, ipaddress.ip_address("2001:db8::1").packed)


@pytest.mark.parametrize("text", ["", ".", "a..b", "-a.example", "a-.example", "x" * 64 + ".example",
                                  "a b.example", "a\x00b", "bad\x07.example", "ünï.example", "x." * 128])
def test_bad_domains(text):
    with pytest.raises(InvalidArgument):
        canonical_domain(text)


def test_domain_forms():
    assert canonical_domain("vpn.example.") == "vpn.example"
    assert canonical_domain("_srv.Corp-1.example") == "_srv.Corp-1.example"
    assert canonical_domain("a" * 63 + ".example") == "a" * 63 + ".example"


def test_refused_calls_change_nothing():
    s = ResolverSettings(1)
    s.add_servers(["10.8.0.1"])
    s.add_domains(["vpn.example"])
    with pytest.raises(InvalidArgument):
        s.add_servers(["10.8.0.2", "bogus"])
    with pytest.raises(InvalidArgument):
        s.add_domains(["ok.example", ""])
    assert (s.servers, s.domains) == (["10.8.0.1"], ["vpn.example"])
    s.add_servers(["10.8.0.1", "10.8.0.2", "10.8.0.1"])  # duplicates are merged, order kept
    assert s.servers == ["10.8.0.1", "10.8.0.2"]


@pytest.mark.parametrize("add, make, bound", [
    ("add_servers", lambda i: f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", MAX_SERVERS),
    ("add_domains", lambda i: f"d{i}.example", MAX_DOMAINS),
])
def test_100000_entries_are_refused_at_once(add, make, bound):
    """The original spends 65-95 s on this; the bound is checked before any parsing."""
    values = [make(i) for i in range(100_000)]
    s = ResolverSettings(1)
    t = time.perf_counter()
    with pytest.raises(InvalidArgument, match=f"at most {bound} per device"):
        getattr(s, add)(values)
    assert time.perf_counter() - t < 0.01
    assert s.servers == [] and s.domains == []
    # At the bound exactly: accepted; one more in a later call: refused, nothing added.
    getattr(s, add)(values[:bound])
    with pytest.raises(InvalidArgument, match="at most"):
        getattr(s, add)([make(bound + 1)])
    assert len(s.servers or s.domains) == bound


# -- resolv.conf text --


def test_parse_rules():
    part = fmt.parse("# comment\n\nnameserver 192.0.2.1\nsearch a.example b.example\n"
                     "nameserver 192.0.2.1\noptions edns0\n; old comment\ndomain a.example\nsearch c.example\n")
    assert part.servers == ["192.0.2.1"]
    assert part.domains == ["a.example", "b.example", "c.example"]
    assert part.other == ["options edns0", "; old comment", "domain a.example"]
    skipped = fmt.parse("nameserver 10.8.0.1\nnameserver 192.0.2.1\nsearch vpn.example a.example\n",
                        skip_servers={"10.8.0.1"}, skip_domains={"vpn.example"})
    assert (skipped.servers, skipped.domains) == (["192.0.2.1"], ["a.example"])


def test_generate_exact_text():
    a, b = ResolverSettings(1), ResolverSettings(2)
    a.add_servers(["10.8.0.1", "192.0.2.1"])
    a.add_domains(["old.example"])
    b.add_servers(["10.9.0.1", "10.8.0.1"])
    b.add_domains(["new.example", "a.example"])
    system = fmt.SystemPart(["192.0.2.1", "192.0.2.2"], ["a.example", "b.example"], ["options edns0"])
    when = time.mktime((2026, 11, 23, 14, 5, 9, 0, 0, -1))
    assert fmt.generate([b, a], system, when) == (
        "#\n"
        "# Generated by netcfg (OpenVPN 3 Linux network configuration service, Python)\n"
        "# Last updated: 2026-11-23 14:05:09 \n"
        "#\n"
        "search new.example a.example old.example b.example\n"
        "\n"
        "# OpenVPN defined name servers\n"
        "nameserver 10.9.0.1\n"
        "nameserver 10.8.0.1\n"
        "nameserver 192.0.2.1\n"
        "\n"
        "# System defined name servers\n"
        "nameserver 192.0.2.2\n"
        "\n"
        "# Other system settings\n"
        "options edns0\n")
    assert fmt.is_ours(fmt.generate([a], fmt.SystemPart()))
    assert not fmt.is_ours("nameserver 192.0.2.1\n# Generated by netcfg later\n" * 3)


def test_interface_text_for_resolvconf():
    s = ResolverSettings(1)
    s.add_servers(["10.8.0.1", "fd00::1"])
    s.add_domains(["vpn.example", "corp.example"])
    assert fmt.interface_text(s) == "search vpn.example corp.example\nnameserver 10.8.0.1\nnameserver fd00::1\n"


# -- the crash record: what the next start does with what a killed run left --


GENERATED = fmt.generate([], fmt.SystemPart(["10.8.0.1"]))
ORIGINAL = "nameserver 192.0.2.53\n"


def left_behind(tmp_path, kind="file", backup=True, current=GENERATED, record=True):
    path, state = tmp_path / "resolv.conf", tmp_path / "state"
    state.mkdir()
    bak = tmp_path / ("resolv.conf" + BACKUP_SUFFIX)
    if backup:
        bak.write_text(ORIGINAL)
    if current is not None:
        path.write_text(current)
    if record:
        (state / RECORD_NAME).write_text(json.dumps({"file": str(path), "backup": str(bak), "kind": kind,
                                                     "mode": 0o644, "uid": 0, "gid": 0}))
    return MovedAside(str(path), str(state)), path, bak


def test_recover_puts_the_original_back(tmp_path, caplog):
    aside, path, bak = left_behind(tmp_path)
    aside.recover()
    assert path.read_text() == ORIGINAL and not bak.exists()
    assert not (tmp_path / "state" / RECORD_NAME).exists()


def test_recover_after_a_crash_before_the_rename_changes_nothing(tmp_path):
    aside, path, bak = left_behind(tmp_path, backup=False, current=ORIGINAL)
    aside.recover()
    assert path.read_text() == ORIGINAL and not (tmp_path / "state" / RECORD_NAME).exists()


def test_recover_keeps_a_newer_file_of_another_program(tmp_path, caplog):
    aside, path, bak = left_behind(tmp_path, current="nameserver 192.0.2.99\n")
    with caplog.at_level(logging.WARNING):
        aside.recover()
    assert path.read_text() == "nameserver 192.0.2.99\n" and bak.read_text() == ORIGINAL
    assert "was replaced by another program" in caplog.text


def test_recover_removes_a_file_that_did_not_exist_before(tmp_path):
    aside, path, bak = left_behind(tmp_path, kind="absent", backup=False)
    aside.recover()
    assert not path.exists()


def test_recover_without_record_but_with_our_backup(tmp_path):
    aside, path, bak = left_behind(tmp_path, record=False)
    aside.recover()
    assert path.read_text() == ORIGINAL


def test_recover_without_record_or_backup_leaves_the_file(tmp_path, caplog):
    aside, path, bak = left_behind(tmp_path, record=False, backup=False)
    with caplog.at_level(logging.ERROR):
        aside.recover()
    assert path.read_text() == GENERATED and "no backup of the original is known" in caplog.text
    with pytest.raises(OSError, match="refusing to take it for the system's file"):
        aside.move_aside()


def test_unreadable_record_is_moved_aside(tmp_path):
    aside, path, bak = left_behind(tmp_path)
    (tmp_path / "state" / RECORD_NAME).write_text("{not json")
    aside.recover()
    assert (tmp_path / "state" / "dns-resolv-conf.broken").exists()


def test_a_foreign_file_at_the_backup_name_is_never_overwritten(tmp_path):
    path, state = tmp_path / "resolv.conf", tmp_path / "state"
    path.write_text(ORIGINAL)
    (tmp_path / ("resolv.conf" + BACKUP_SUFFIX)).write_text("somebody's file\n")
    aside = MovedAside(str(path), str(state))
    record = aside.move_aside()
    assert record.backup.endswith(BACKUP_SUFFIX + ".1")
    assert (tmp_path / ("resolv.conf" + BACKUP_SUFFIX)).read_text() == "somebody's file\n"
    assert json.loads((state / RECORD_NAME).read_text())["backup"] == record.backup
    aside.restore()
    assert path.read_text() == ORIGINAL


def test_record_written_before_the_rename(tmp_path, monkeypatch):
    """A crash between the two steps must leave a record (the next start then sees
    the file still in place and changes nothing)."""
    path, state = tmp_path / "resolv.conf", tmp_path / "state"
    path.write_text(ORIGINAL)
    aside = MovedAside(str(path), str(state))
    seen = []
    real_rename = os.rename

    def rename(src, dst):
        if Path(src) == path:  # resolv.conf moved aside (the record itself is renamed into place too)
            seen.append(json.loads((state / RECORD_NAME).read_text()))
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    aside.move_aside()
    assert seen and Record(**seen[0]).kind == "file"


# -- inotify events --


def test_parse_inotify_events():
    name = b"resolv.conf\0\0\0\0\0"
    data = struct.pack("iIII", 1, inotify.IN_MOVED_TO, 7, len(name)) + name
    data += struct.pack("iIII", 1, inotify.IN_Q_OVERFLOW, 0, 0)
    assert inotify.parse_events(data) == [(inotify.IN_MOVED_TO, "resolv.conf"), (inotify.IN_Q_OVERFLOW, "")]


@pytest.mark.asyncio
async def test_directory_watch_sees_rename_and_in_place_write(tmp_path):
    events = []
    watch = inotify.DirectoryWatch(str(tmp_path), lambda mask, name: events.append((mask, name)))
    watch.start()
    try:
        (tmp_path / "tmp").write_text("x")
        os.rename(tmp_path / "tmp", tmp_path / "resolv.conf")
        with open(tmp_path / "resolv.conf", "w") as f:
            f.write("y")
        await asyncio.sleep(0.1)
    finally:
        watch.close()
    named = [(m, n) for m, n in events if n == "resolv.conf"]
    assert any(m & inotify.IN_MOVED_TO for m, _ in named) and any(m & inotify.IN_CLOSE_WRITE for m, _ in named)


# -- the manager without a resolver --


@pytest.mark.asyncio
async def test_no_backend_stores_but_reports_nothing():
    m = DnsManager()
    a = m.new_settings()
    a.add_servers(["10.8.0.1"])
    assert await m.enable(a, "tun0") == []  # spec 7.1: no events without a resolver
    assert m.aggregate("servers") == ["10.8.0.1"]
    assert await m.remove(a) == ([], []) and m.aggregate("servers") == []


@pytest.mark.asyncio
async def test_unusable_state_dir_fails_before_the_file_is_touched(tmp_path):
    """Without a place for the record the original is not moved (and the error says where)."""
    from netcfg.dns.resolv_conf import ResolvConfBackend
    from netcfg.errors import BackendUnavailable

    path = tmp_path / "resolv.conf"
    path.write_text(ORIGINAL)
    (tmp_path / "blocker").write_text("a file where the state directory should be\n")
    m = DnsManager(ResolvConfBackend(str(path), str(tmp_path / "blocker" / "state")))
    await m.start()
    a = m.new_settings()
    a.add_servers(["10.8.0.1"])
    with pytest.raises(BackendUnavailable, match="blocker"):
        await m.enable(a, "")
    assert path.read_text() == ORIGINAL and not a.enabled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "resolv.conf"]
    await m.stop()
