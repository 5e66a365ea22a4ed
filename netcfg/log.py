"""Logging: Python levels for the original's categories, file/stderr output.

The original's verbosity 0-6 (spec 9) maps onto Python levels; VERB1 and
VERB2 sit between DEBUG and INFO.  The D-Bus `Log` signal is a handler added
by bus/logsignal.py; this module knows nothing of the bus.
"""

from __future__ import annotations

import logging
import sys

VERB2 = 13
VERB1 = 16
logging.addLevelName(VERB2, "VERB2")
logging.addLevelName(VERB1, "VERB1")

# --log-level L -> lowest Python level that passes (spec 9: DEBUG needs 6, ...)
THRESHOLD = {6: logging.DEBUG, 5: VERB2, 4: VERB1, 3: logging.INFO, 2: logging.WARNING, 1: logging.ERROR, 0: logging.CRITICAL}

# Python level -> LogCategory on the wire (spec 9)
CATEGORY = {logging.DEBUG: 1, VERB2: 2, VERB1: 3, logging.INFO: 4, logging.WARNING: 5, logging.ERROR: 6, logging.CRITICAL: 7}


def category(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, VERB1, VERB2):
        if levelno >= level:
            return CATEGORY[level]
    return CATEGORY[logging.DEBUG]


def passes(levelno: int, verbosity: int) -> bool:
    return levelno >= THRESHOLD[verbosity]


def setup(verbosity: int, log_file: str | None) -> None:
    """Log to the file (or stderr) at `verbosity`; bus/logsignal.py may add a handler."""
    root = logging.getLogger()
    root.setLevel(THRESHOLD[verbosity])
    if log_file == "stdout:":
        handler: logging.Handler = logging.StreamHandler(sys.stdout)
    elif log_file:
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(THRESHOLD[verbosity])
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    handler.addFilter(quiet_libraries)
    root.handlers[:] = [handler]


def quiet_libraries(record: logging.LogRecord) -> bool:
    # Library chatter stays out.  A filter, not setLevel: pyroute2 resets
    # its logger's level to 0 when it is imported.
    return record.levelno >= logging.WARNING or not record.name.startswith(("pyroute2", "asyncio", "dbus_fast"))


def widen(verbosity: int) -> None:
    """Let records down to `verbosity` reach handlers (each handler still filters)."""
    root = logging.getLogger()
    root.setLevel(min(root.level, THRESHOLD[verbosity]))
