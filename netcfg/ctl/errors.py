"""netcfgctl's exit codes and the one exception that carries them."""

from __future__ import annotations

OK = 0
FAILED = 1  # the service refused or failed the request; not found
USAGE = 2  # bad command line or value
UNREACHABLE = 3  # no bus, or netcfg is not on it (openvpn3-admin's code for the same)
DENIED = 4  # not allowed: the bus policy, the service, or file permissions

EXIT_CODES = {
    OK: "success",
    FAILED: "the service refused or failed the request, or the device or subscriber does not exist",
    USAGE: "bad command line or value (nothing was changed)",
    UNREACHABLE: "the bus or the netcfg service cannot be reached",
    DENIED: "permission denied: the command needs root",
}


class CtlError(Exception):
    """A failure to report in one line, with its exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
