"""The one table from domain exceptions to D-Bus error names and texts.

No other module builds an error name.  Expected errors (bad argument, not
the owner) are logged at VERB1; anything unexpected is logged with its
traceback and the caller gets a generic text without internals.
"""

from __future__ import annotations

import logging

from .. import errors as core
from ..log import VERB1

log = logging.getLogger(__name__)

NETCFG_ERROR = "net.openvpn.v3.netcfg.error"
FAILED = "org.freedesktop.DBus.Error.Failed"
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
UNKNOWN_INTERFACE = "org.freedesktop.DBus.Error.UnknownInterface"
UNKNOWN_PROPERTY = "org.freedesktop.DBus.Error.UnknownProperty"
PROPERTY_READ_ONLY = "org.freedesktop.DBus.Error.PropertyReadOnly"


class BusError(Exception):
    """An error decided in bus/ itself (unknown method, bad signature, ...)."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name, self.text = name, text


# Most specific class first.
TABLE: list[tuple[type[Exception], str]] = [
    (core.InvalidProperty, INVALID_ARGS),
    (core.NotAuthorized, ACCESS_DENIED),
    (core.UnknownDevice, UNKNOWN_OBJECT),
    (core.InvalidArgument, NETCFG_ERROR),
    (core.NotFound, NETCFG_ERROR),
    (core.StateError, NETCFG_ERROR),
    (core.TeardownIncomplete, NETCFG_ERROR),
    (core.KernelRefused, NETCFG_ERROR),
    (core.NoUplink, NETCFG_ERROR),
    (core.BackendUnavailable, NETCFG_ERROR),
    (core.NetcfgError, NETCFG_ERROR),
]


def to_wire(exc: BaseException, what: str) -> tuple[str, str]:
    """(error name, text) for an exception raised while serving `what`."""
    if isinstance(exc, BusError):
        log.log(VERB1, "%s: %s", what, exc.text)
        return exc.name, exc.text
    for cls, name in TABLE:
        if isinstance(exc, cls):
            log.log(VERB1, "%s failed: %s", what, exc)
            return name, str(exc)
    log.error("%s: unexpected error", what, exc_info=exc)
    return FAILED, f"internal error while serving {what}; see the netcfg log"
