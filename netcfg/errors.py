"""Domain exceptions of the core.  No D-Bus here: bus/errors.py maps them."""

from __future__ import annotations

import os


class NetcfgError(Exception):
    """Base class: an operation failed for a reason we can explain."""


class InvalidArgument(NetcfgError):
    """A value from a caller is unusable; the message names it."""


class InvalidProperty(NetcfgError):
    """A property write with a value outside its domain."""


class NotAuthorized(NetcfgError):
    """The caller may not do this."""


class UnknownDevice(NetcfgError):
    """No such device object (destroyed, or never existed)."""


class NotFound(NetcfgError):
    """A named thing (subscription, ...) does not exist."""


class StateError(NetcfgError):
    """The request does not fit the object's current state."""


class KernelRefused(NetcfgError):
    """The kernel rejected a netlink request or ioctl."""

    def __init__(self, op: str, obj: object, errno: int, extack: str = ""):
        self.op, self.obj, self.errno, self.extack = op, obj, errno, extack
        text = f"{op} {obj}: {os.strerror(errno) if errno else 'failed'}"
        if extack:
            text += f" ({extack})"
        super().__init__(text)


class NoUplink(NetcfgError):
    """No route/gateway outside the tunnels for an address family."""


class BackendUnavailable(NetcfgError):
    """A DNS backend cannot do its work right now."""


class TeardownIncomplete(NetcfgError):
    """A device is gone, but the kernel or a DNS backend refused part of its
    teardown; what it refused is journaled and tried again at the next start."""

    def __init__(self, errors: list[Exception]):
        self.errors = errors
        shown = "; ".join(map(str, errors[:5])) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        super().__init__(f"the device was removed, but not all of it: {shown} "
                         "(kept in the journal, tried again at the next start)")


class StartupError(Exception):
    """The service cannot start; the message names what failed (exit code 3)."""
