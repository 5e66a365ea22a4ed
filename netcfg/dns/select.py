"""Which DNS backend: `--dns-backend auto|systemd-resolved|resolv-conf|openresolv|none`.

`auto`: systemd-resolved when org.freedesktop.resolve1 is on the bus (has
an owner), or when the bus can start it and /etc/resolv.conf points at it
(the test of the original's `openvpn3-admin init-config`, spec 10.2: a
resolved that nobody uses would swallow the VPN's DNS settings), else
openresolv when `resolvconf` is openresolv, else the resolv.conf file.  The choice and its reason are
logged once, here.  An explicitly chosen backend that is missing at start
is still used: the service runs, the backend logs why it cannot work yet,
and it works once the missing part appears (upstream #88, #124).
"""

from __future__ import annotations

import logging
import os

from ..config import Options
from .backend import BusCaller, DnsBackend
from .none import NoBackend
from .openresolv import OpenresolvBackend, openresolv_version
from .resolv_conf import ResolvConfBackend
from .resolved import RESOLVE1, ResolvedBackend

log = logging.getLogger(__name__)

DEFAULT_RESOLV_CONF = "/etc/resolv.conf"


async def select_backend(options: Options, bus: BusCaller) -> DnsBackend:
    choice = options.dns_backend
    if choice == "auto":
        choice, reason = await _auto(bus)
    else:
        reason = "configured"
    backend = build(choice, options, bus)
    log.info("DNS backend %s (%s)", backend.name, reason)
    return backend


async def _auto(bus: BusCaller) -> tuple[str, str]:
    if await bus.has_owner(RESOLVE1):
        return "systemd-resolved", f"auto: {RESOLVE1} is on the bus"
    if await bus.activatable(RESOLVE1) and resolv_conf_uses_resolved(DEFAULT_RESOLV_CONF):
        return "systemd-resolved", f"auto: {RESOLVE1} can be started and {DEFAULT_RESOLV_CONF} points at it"
    version = await openresolv_version()
    if version is not None:
        return "openresolv", f"auto: no {RESOLVE1} on the bus, resolvconf is {version}"
    return "resolv-conf", f"auto: no {RESOLVE1} on the bus and no openresolv"


def resolv_conf_uses_resolved(path: str) -> bool:
    """resolv.conf is resolved's own file, or sends queries to its stub."""
    try:
        if os.path.realpath(path).startswith("/run/systemd/resolve/"):
            return True
        with open(path, encoding="utf-8", errors="replace") as f:
            return any(line.split()[:2] == ["nameserver", "127.0.0.53"] for line in f)
    except OSError:
        return False


def build(choice: str, options: Options, bus: BusCaller) -> DnsBackend:
    if choice == "systemd-resolved":
        return ResolvedBackend(bus, options.state_dir)
    if choice == "openresolv":
        return OpenresolvBackend()
    if choice == "resolv-conf":
        return ResolvConfBackend(options.resolv_conf or DEFAULT_RESOLV_CONF, options.state_dir)
    if choice == "none":
        return NoBackend()
    raise ValueError(f"unknown DNS backend '{choice}'")
