"""The user's resolv.conf moved aside, and the record that survives a crash.

Order of operations (the original's crash bug, spec 7.3 [quirk], is that a
run killed with the generated file in place made the next run take that
file for the user's and overwrite the real backup with it):

1. write the record `<state-dir>/dns-resolv-conf.json` (file, backup path,
   what the file was: regular file, symlink or absent; its mode and owner),
   fsync it and its directory;
2. only then rename the file (or the symlink itself) to the backup name.

So whenever a backup exists, a record naming it exists too, and the next
start (`recover`) puts the backup back before anything else, whatever the
file holds by then.  Restore is one rename(2) over our file, so there is
no moment without a resolv.conf.  All of it is synchronous file work: the
backend runs it in a thread, never on the event loop.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic_file import fsync_directory, write_atomically
from .resolv_conf_format import is_ours

log = logging.getLogger(__name__)

RECORD_NAME = "dns-resolv-conf.json"
BACKUP_SUFFIX = ".netcfg-bak"


@dataclass
class Record:
    file: str
    backup: str
    kind: str  # "file", "symlink" or "absent": what `file` was before we touched it
    mode: int = 0o644  # for the file we write: the original's permissions
    uid: int = 0
    gid: int = 0


def read_text(path: Path) -> str | None:
    """The file's text (following a symlink), or None when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None


def generated_file(path: Path) -> bool:
    """A regular file carrying our header."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
    except FileNotFoundError:
        return False
    text = read_text(path)
    return text is not None and is_ours(text)


def _describe(path: Path) -> tuple[str, int, int, int]:
    """(kind, mode, uid, gid) of what is at `path`; a symlink gets its target's
    permissions (they are what readers saw), a dangling one the default."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent", 0o644, 0, 0
    kind = "file"
    if stat.S_ISLNK(st.st_mode):
        kind = "symlink"
        try:
            st = os.stat(path)
        except OSError:
            return kind, 0o644, 0, 0
    return kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


class MovedAside:
    """The original file of one resolv.conf path, while we own that path."""

    def __init__(self, path: str, state_dir: str) -> None:
        self.path = Path(os.path.abspath(path))
        self.state_dir = Path(state_dir)
        self.record_path = self.state_dir / RECORD_NAME
        self.record: Record | None = None  # set while the original is moved aside

    @property
    def active(self) -> bool:
        return self.record is not None

    # -- the record --

    def _save(self, record: Record) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(self.record_path, json.dumps(asdict(record)).encode())

    def _load(self) -> Record | None:
        try:
            return Record(**json.loads(self.record_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as e:
            broken = self.record_path.with_suffix(".broken")
            log.error("unreadable %s (%s): moved to %s", self.record_path, e, broken)
            self.record_path.rename(broken)
            return None

    def _drop(self) -> None:
        self.record_path.unlink(missing_ok=True)
        self.record = None

    # -- moving aside and back --

    def _free_backup_name(self) -> Path:
        base = self.path.with_name(self.path.name + BACKUP_SUFFIX)
        candidate, n = base, 0
        while os.path.lexists(candidate):  # never overwrite a file we did not record
            n += 1
            candidate = base.with_name(f"{base.name}.{n}")
        return candidate

    def move_aside(self) -> Record:
        """Record, then rename the original out of the way (first write only)."""
        if generated_file(self.path):
            raise OSError(
                f"{self.path} holds netcfg's own generated content from an earlier run and no "
                f"backup of the original is recorded in {self.state_dir}; refusing to take it "
                f"for the system's file (restore it by hand)")
        kind, mode, uid, gid = _describe(self.path)
        record = Record(str(self.path), str(self._free_backup_name()), kind, mode, uid, gid)
        self._save(record)  # before anything changes
        if record.kind != "absent":
            try:
                os.rename(self.path, record.backup)
            except OSError:
                self._drop()  # nothing moved: the record must not claim otherwise
                raise
            fsync_directory(self.path.parent)
        self.record = record
        log.info("moved %s (%s) aside to %s; recorded in %s", self.path, record.kind, record.backup, self.record_path)
        return record

    def restore(self) -> None:
        """Put the original back over our file (one rename) and forget the record."""
        record = self.record
        if record is None:
            return
        if record.kind == "absent":
            if generated_file(self.path):
                self.path.unlink()
                fsync_directory(self.path.parent)
        else:
            os.rename(record.backup, self.path)
            fsync_directory(self.path.parent)
        self._drop()
        log.info("restored %s", self.path)

    def adopt_current(self) -> None:
        """Another program replaced the file: its version becomes the one to restore."""
        record = self.record
        assert record is not None
        kind, mode, uid, gid = _describe(self.path)
        new = Record(record.file, record.backup, kind, mode, uid, gid)
        self._save(new)
        os.rename(self.path, new.backup)  # replaces the older original
        fsync_directory(self.path.parent)
        self.record = new

    def original_text(self) -> str:
        """The system's resolv.conf text ("" when there was none or it cannot be read)."""
        if self.record is None or self.record.kind == "absent":
            return ""
        return read_text(Path(self.record.backup)) or ""

    # -- after a crash --

    def recover(self) -> None:
        """At start: undo what a run that did not finish left behind."""
        record = self._load()
        if record is None:
            self._recover_unrecorded()
            return
        if record.file != str(self.path):
            log.warning("%s is about %s, not %s: restoring that file anyway", self.record_path, record.file, self.path)
        path, backup = Path(record.file), Path(record.backup)
        if record.kind == "absent":
            if generated_file(path):
                path.unlink()
                log.warning("removed %s, generated by a run that did not finish (there was no such file before)", path)
        elif os.path.lexists(backup):
            if not os.path.lexists(path) or generated_file(path):
                os.rename(backup, path)
                fsync_directory(path.parent)
                log.warning("restored %s from %s, left by a run that did not finish", path, backup)
            else:
                log.warning("%s was replaced by another program after an unfinished run; "
                            "the older original stays in %s", path, backup)
        # else: the run stopped between the record and the rename: nothing moved.
        self._drop()

    def _recover_unrecorded(self) -> None:
        if not generated_file(self.path):
            return
        backup = self.path.with_name(self.path.name + BACKUP_SUFFIX)
        if os.path.lexists(backup):
            os.rename(backup, self.path)
            log.warning("%s held netcfg's generated content and no record: restored %s", self.path, backup)
        else:
            log.error("%s holds netcfg's generated content but no backup of the original is known "
                      "(state directory lost?): left as it is", self.path)
