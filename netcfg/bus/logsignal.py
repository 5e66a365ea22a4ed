"""The `Log(u group, u level, s message)` signal (spec 9).

Sent unicast to the owner of `net.openvpn.v3.log` when that name exists;
when it does not, nothing is sent and the service runs on (the original
exits).  The owner is followed through NameOwnerChanged, so a restarted log
service is found again.  Each object filters by its own log level.
"""

from __future__ import annotations

import logging
import re

from .. import log as levels
from . import INTERFACE

LOG_SERVICE = "net.openvpn.v3.log"
GROUP_NETCFG = 8
_CONTROL = re.compile(r"[\x00-\x1f]")


class LogSignalHandler(logging.Handler):
    def __init__(self, dispatcher, manager_path: str) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(levels.quiet_libraries)
        self.dispatcher = dispatcher
        self.manager_path = manager_path
        self.target: str | None = None  # unique name of the log service
        self._sending = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.target is None or self._sending:
            return
        path = getattr(record, "netcfg_path", self.manager_path)
        face = self.dispatcher.objects.get(path) or self.dispatcher.objects.get(self.manager_path)
        verbosity = getattr(face, "log_level", 4)
        if not levels.passes(record.levelno, verbosity):
            return
        self._sending = True  # a log line while sending must not recurse
        try:
            text = _CONTROL.sub("", record.getMessage())
            self.dispatcher.emit(path, INTERFACE, "Log", "uus",
                                 [GROUP_NETCFG, levels.category(record.levelno), text], destination=self.target)
        except Exception:
            pass  # logging must never break the service
        finally:
            self._sending = False
