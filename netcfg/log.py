"""Logging: Python levels for the original's categories; where lines go.

The original's verbosity 0-6 (spec 9) maps onto Python levels; VERB1 and
VERB2 sit between DEBUG and INFO.  The D-Bus `Log` signal is a handler added
by bus/logsignal.py; this module knows nothing of the bus.

Where lines go (`setup`):
* `--log-file FILE` (or `stdout:`): that file instead of stderr, each line
  with its own timestamp;
* stderr, when it is the journal's stream (systemd sets JOURNAL_STREAM to
  its device:inode) or `--log-journal` asks for it: no timestamp (the
  journal has one), and each record's syslog priority.  Through journald's
  native protocol when Debian's python3-systemd binding is importable
  (`native`: fields NETCFG_DEVICE_PATH and NETCFG_OWNER_* name the device
  and its creator), else as a `<N>` prefix on every line (`prefix`);
* stderr otherwise: timestamped lines.
"""

from __future__ import annotations

import logging
import os
import sys

VERB2 = 13
VERB1 = 16
logging.addLevelName(VERB2, "VERB2")
logging.addLevelName(VERB1, "VERB1")

# --log-level L -> lowest Python level that passes (spec 9: DEBUG needs 6, ...)
THRESHOLD = {6: logging.DEBUG, 5: VERB2, 4: VERB1, 3: logging.INFO, 2: logging.WARNING, 1: logging.ERROR, 0: logging.CRITICAL}

# Python level -> LogCategory on the wire (spec 9)
CATEGORY = {logging.DEBUG: 1, VERB2: 2, VERB1: 3, logging.INFO: 4, logging.WARNING: 5, logging.ERROR: 6, logging.CRITICAL: 7}

# Python level -> syslog priority (journalctl -p): crit, err, warning, info;
# VERB1, VERB2 and DEBUG are debug.
PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))

JOURNAL_MODES = ("auto", "native", "prefix", "off")
PLAIN_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
JOURNAL_FORMAT = "[%(levelname)s] %(name)s: %(message)s"


def category(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, VERB1, VERB2):
        if levelno >= level:
            return CATEGORY[level]
    return CATEGORY[logging.DEBUG]


def priority(levelno: int) -> int:
    return next((p for level, p in PRIORITY if levelno >= level), 7)


def passes(levelno: int, verbosity: int) -> bool:
    return levelno >= THRESHOLD[verbosity]


def stderr_is_journal(environ=os.environ) -> bool:
    """True when fd 2 is the stream systemd connected to the journal.

    systemd sets JOURNAL_STREAM=DEV:INODE of that stream; a child whose
    stderr was redirected elsewhere inherits the variable, so it is compared
    with fd 2 itself (the rule sd_journal_stream_fd(3) gives)."""
    value = environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(2)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def journal_binding():
    """systemd.journal (Debian's python3-systemd), or None."""
    try:
        from systemd import journal
    except ImportError:
        return None
    return journal if hasattr(journal, "send") else None


def journal_mode(requested: str, log_file: str | None) -> str:
    """What `--log-journal REQUESTED` means here: native, prefix or off.

    Raises ValueError when `native` is asked for and cannot be had."""
    if log_file:
        return "off"  # the file gets timestamped lines; nothing goes to stderr
    if requested == "auto":
        if not stderr_is_journal():
            return "off"
        return "native" if journal_binding() else "prefix"
    if requested == "native" and journal_binding() is None:
        raise ValueError("--log-journal native needs the python3-systemd binding (systemd.journal), "
                         "which is not installed; use --log-journal prefix")
    return requested


class PrefixFormatter(logging.Formatter):
    """`<N>` before every line of the record: journald (and syslog readers
    of a stream) take the priority from it; a traceback's continuation lines
    would otherwise be logged at the default priority, info."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


class JournalHandler(logging.Handler):
    """One journal entry per record through journald's native protocol.

    MESSAGE is the message (and its traceback, if any); PRIORITY,
    SYSLOG_IDENTIFIER, LOGGER and the CODE_* fields are journald's usual
    ones; NETCFG_DEVICE_PATH and NETCFG_OWNER_UID/_PID/_BUS_NAME come from
    the record's `netcfg_path` / `netcfg_owner` (session.py's log_extra)."""

    def __init__(self, journal, identifier: str) -> None:
        super().__init__()
        self.journal = journal
        self.identifier = identifier

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {
                "PRIORITY": str(priority(record.levelno)),
                "SYSLOG_IDENTIFIER": self.identifier,
                "LOGGER": record.name,
                "CODE_FILE": record.pathname,
                "CODE_LINE": record.lineno,
                "CODE_FUNC": record.funcName,
            }
            fields.update(record_fields(record))
            self.journal.send(self.format(record), **fields)
        except Exception:
            self.handleError(record)


def record_fields(record: logging.LogRecord) -> dict[str, str]:
    """The structured fields naming a record's device and its owner."""
    fields = {}
    path = getattr(record, "netcfg_path", None)
    if path:
        fields["NETCFG_DEVICE_PATH"] = path
    owner = getattr(record, "netcfg_owner", None)
    if owner is not None:
        fields.update(NETCFG_OWNER_UID=str(owner.uid), NETCFG_OWNER_PID=str(owner.pid),
                      NETCFG_OWNER_BUS_NAME=owner.bus_name)
    return fields


def setup(verbosity: int, log_file: str | None, journal: str = "auto") -> str:
    """Log at `verbosity` to the file, the journal or stderr; returns the
    journal mode used (native, prefix, off).  Raises OSError when the file
    cannot be opened, ValueError for an impossible `journal`."""
    mode = journal_mode(journal, log_file)
    if log_file == "stdout:":
        handler: logging.Handler = logging.StreamHandler(sys.stdout)
    elif log_file:
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    elif mode == "native":
        handler = JournalHandler(journal_binding(), os.path.basename(sys.argv[0]) or "netcfg-service")
    else:
        handler = logging.StreamHandler(sys.stderr)
    if mode == "native":
        handler.setFormatter(logging.Formatter("%(message)s"))
    elif mode == "prefix":
        handler.setFormatter(PrefixFormatter(JOURNAL_FORMAT))
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    handler.setLevel(THRESHOLD[verbosity])
    handler.addFilter(quiet_libraries)
    root = logging.getLogger()
    root.setLevel(THRESHOLD[verbosity])
    root.handlers[:] = [handler]
    return mode


def sighup_ignored() -> None:
    """SIGHUP's whole effect (docs/configuration.md): one warning."""
    logging.getLogger("netcfg").warning(
        "SIGHUP ignored: netcfg does not reload its configuration; "
        "restart it to apply changes (that tears every device down)")


def quiet_libraries(record: logging.LogRecord) -> bool:
    # Library chatter stays out.  A filter, not setLevel: pyroute2 resets
    # its logger's level to 0 when it is imported.  pyroute2's tc module
    # warns at import when /proc/net/psched is hidden (the unit's
    # ProcSubset=pid); netcfg uses no tc.
    if record.name.startswith("pyroute2.netlink.rtnl.tcmsg"):
        return False
    return record.levelno >= logging.WARNING or not record.name.startswith(("pyroute2", "asyncio", "dbus_fast"))


def widen(verbosity: int) -> None:
    """Let records down to `verbosity` reach handlers (each handler still filters)."""
    root = logging.getLogger()
    root.setLevel(min(root.level, THRESHOLD[verbosity]))
