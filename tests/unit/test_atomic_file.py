"""One atomic-write helper (issue 15, item 7): temporary file, fsync,
rename, fsync of the directory, in that order; or, for the journal, the
rename first and the fsyncs when the journal is quiet.  The journal, resolv.conf, its
backup record and the resolved record all write through it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from netcfg import atomic_file
from netcfg.dns import resolv_conf, resolv_conf_backup, resolved
from netcfg.state import Journal


def traced(monkeypatch) -> list[str]:
    calls: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        calls.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        return real_fsync(fd)

    def rename(src, dst):
        calls.append("rename")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    return calls


def test_write_then_fsync_then_rename_then_fsync_the_directory(tmp_path, monkeypatch):
    calls = traced(monkeypatch)
    target = tmp_path / "f"
    target.write_text("old")
    atomic_file.write_atomically(target, b"new", mode=0o640)
    assert calls == ["fsync file", "rename", "fsync dir"]
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o640
    assert os.listdir(tmp_path) == ["f"]  # no temporary left


def test_the_fsyncs_deferred_for_files_that_end_with_the_machine(tmp_path, monkeypatch):
    calls = traced(monkeypatch)
    pending: list[int] = []
    atomic_file.write_atomically(tmp_path / "f", b"x", defer_sync=pending)
    assert calls == ["rename"] and (tmp_path / "f").read_bytes() == b"x" and len(pending) == 1
    atomic_file.sync_deferred(pending, tmp_path)
    assert calls == ["rename", "fsync file", "fsync dir"]
    with pytest.raises(OSError):
        os.fstat(pending[0])  # closed


def test_a_symlink_is_replaced_not_followed(tmp_path):
    (tmp_path / "elsewhere").write_text("keep")
    (tmp_path / "f").symlink_to(tmp_path / "elsewhere")
    atomic_file.write_atomically(tmp_path / "f", b"new")
    assert not (tmp_path / "f").is_symlink() and (tmp_path / "elsewhere").read_text() == "keep"


def test_every_state_file_goes_through_the_helper(tmp_path, monkeypatch):
    written: list[str] = []
    real = atomic_file.write_atomically

    def spy(path, data, **kw):
        written.append(Path(path).name)
        return real(path, data, **kw)

    for module in (resolv_conf, resolv_conf_backup, resolved):
        monkeypatch.setattr(module, "write_atomically", spy)
    import netcfg.state as state

    monkeypatch.setattr(state, "write_atomically", spy)
    journal = Journal(tmp_path / "state")

    async def journal_write():
        await journal.write("k", [])
        journal.close()  # makes it durable too

    asyncio.run(journal_write())
    aside = resolv_conf_backup.MovedAside(str(tmp_path / "resolv.conf"), str(tmp_path / "state"))
    (tmp_path / "resolv.conf").write_text("nameserver 192.0.2.1\n")
    aside.move_aside()
    backend = resolv_conf.ResolvConfBackend(str(tmp_path / "resolv.conf"), str(tmp_path / "state"))
    backend.aside = aside
    backend._write("nameserver 10.8.0.1\n")
    resolved.ResolvedBackend._write_record(type("R", (), {"record_path": tmp_path / "state" / "resolved"})(),
                                           [{"ifindex": 1}])
    assert written == ["ledger-k.json", resolv_conf_backup.RECORD_NAME, "resolv.conf", "resolved"]


@pytest.mark.parametrize("fail_at", ["write", "rename"])
def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, fail_at):
    target = tmp_path / "f"
    target.write_text("old")

    def broken(*args, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, fail_at, broken)
    with pytest.raises(OSError):
        atomic_file.write_atomically(target, b"new")
    monkeypatch.undo()
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f"]
