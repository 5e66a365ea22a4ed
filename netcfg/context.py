"""What every session shares, and who a caller is.

`Context` is handed to each Session: options, the kernel handles, the
journal, DNS, the event sink, the kernel watch, the tunnel table, and the
session hooks.  It holds no session state: each Session changes only its
own entries of the tunnel table, and only a Session calls the hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Awaitable, Callable

from .config import Options
from .dns.order import DnsManager
from .events import EventSink
from .kernel.netlink import Netlink
from .kernel.watch import KernelWatch
from .state import Journal


@dataclass(frozen=True, slots=True)
class Owner:
    """A caller: its unique bus name (the identity that matches its devices
    and protections everywhere), with the UID and PID the bus daemon gave
    for it (GetConnectionCredentials)."""

    uid: int
    pid: int
    bus_name: str


def may_access(owner: Owner, uid: int, pid: int) -> bool:
    """Device owner rule (spec 4): root, or the creating process (any of its connections)."""
    return uid == 0 or (uid == owner.uid and pid == owner.pid)


class TunnelTable:
    """ifindex -> the session whose tunnel link it is.

    How a kernel notice or a reading of the uplink tells our tunnels from
    everything else.  A session adds and releases its own entries, nobody
    else's (session.py).
    """

    def __init__(self) -> None:
        self._sessions: dict[int, Any] = {}

    def add(self, ifindex: int, session: Any) -> None:
        self._sessions[ifindex] = session

    def release(self, session: Any, keep: int | None = None) -> None:
        """Drop `session`'s entries but `keep` (its current link, if it still has one)."""
        for ifindex in [i for i, s in self._sessions.items() if s is session and i != keep]:
            del self._sessions[ifindex]

    def ifindexes(self) -> set[int]:
        return set(self._sessions)

    def session_of(self, ifindex: int | None) -> Any:
        """The session whose tunnel `ifindex` is, or None."""
        return self._sessions.get(ifindex)

    def __contains__(self, ifindex: object) -> bool:
        return ifindex in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)


class Transition(Enum):
    """What a session hook is told (see `SessionEvent`)."""

    ESTABLISHED = "established"  # configured, not yet answered: a hook that raises fails the Establish
    DISABLED = "disabled"  # after Disable removed the routes and addresses
    DESTROYED = "destroyed"  # torn down on purpose (Destroy, Cleanup, shutdown), told before anything goes
    LOST = "lost"  # torn down because its client left the bus or died, told before anything goes


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One transition of one device, for features that keep a policy per
    device (leak protection needs to know when a device that redirects the
    default route comes up, goes down on purpose, or is lost with its client)."""

    transition: Transition
    path: str
    owner: Owner
    ifname: str
    ifindex: int | None  # None before Establish and after a failed one
    redirects_ipv4: bool  # it carries (or carried) the IPv4 redirect-gateway routes
    redirects_ipv6: bool


# A hook is awaited with the session's lock held, in the order registered.
# At ESTABLISHED it may return kernel objects (of registered kinds,
# kernel/kinds.py) for the session to hold: they are journaled and created
# with the device's own, before the reply, and removed with them, in
# reverse.  Errors of teardown transitions are gathered with the others.
SessionHook = Callable[[SessionEvent], Awaitable[list | None]]


@dataclass
class Context:
    options: Options
    nl: Netlink
    journal: Journal
    dns: DnsManager
    events: EventSink
    watch: KernelWatch
    tunnels: TunnelTable = field(default_factory=TunnelTable)
    hooks: list[SessionHook] = field(default_factory=list)
