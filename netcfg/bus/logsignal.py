"""The `Log(u group, u level, s message)` signal (spec 9).

Sent unicast to the owner of `net.openvpn.v3.log` when that name exists;
when it does not, nothing is sent and the service runs on (the original
exits).  The owner is followed through NameOwnerChanged, so a restarted log
service is found again.  Each object filters by its own log level.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading

from dbus_fast import Message, MessageFlag

from .. import log as levels
from . import BUS_NAME, INTERFACE

LOG_SERVICE = "net.openvpn.v3.log"
LOG_PATH = "/net/openvpn/v3/log"
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
        # Records also come from worker threads (asyncio.to_thread); the bus
        # library is not thread-safe, so those are sent from the loop.
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def follow(self, owner: str | None) -> None:
        """The log service's owner changed (or is known at start): attach to it.

        The OpenVPN 3 log service records only producers that attached
        (spec 4.1 step 5).  Fire and forget: logging never waits.
        """
        self.target = owner or None
        if self.target:
            self._log_service_call("Attach")

    def detach(self) -> None:
        if self.target:
            self._log_service_call("Detach")

    def _log_service_call(self, member: str) -> None:
        try:
            self.dispatcher.bus.send(Message(destination=LOG_SERVICE, path=LOG_PATH, interface=LOG_SERVICE,
                                             member=member, signature="s", body=[BUS_NAME],
                                             flags=MessageFlag.NO_REPLY_EXPECTED))
        except Exception:
            pass

    def emit(self, record: logging.LogRecord) -> None:
        if self.target is None or self._sending:
            return
        # Spec 9: from the emitting object's path, filtered by its log level.
        path = getattr(record, "netcfg_path", self.manager_path)
        face = self.dispatcher.objects.get(path)
        if face is None:
            path, face = self.manager_path, self.dispatcher.objects.get(self.manager_path)
        if not levels.passes(record.levelno, getattr(face, "log_level", 4)):
            return
        body = [GROUP_NETCFG, levels.category(record.levelno), _CONTROL.sub("", record.getMessage())]
        if threading.get_ident() == self._loop_thread:
            self._send(path, body)
        else:
            self._loop.call_soon_threadsafe(self._send, path, body)

    def _send(self, path: str, body: list) -> None:
        if self.target is None:
            return
        self._sending = True  # a log line while sending must not recurse
        try:
            self.dispatcher.emit(path, INTERFACE, "Log", "uus", body, destination=self.target)
        except Exception:
            pass  # logging must never break the service
        finally:
            self._sending = False
