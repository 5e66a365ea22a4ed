"""When leak protection holds, and why: the kill switch's state, without I/O.

The service tells a `KillSwitch` what happens to its devices and clients;
the switch answers what the rules must allow (`rules()`, None: no table)
and what to show (`status()`).  Timers and the kernel are the caller's
(netcfg/leak/guard.py); this module only decides, so every rule of the
issue is a unit test here:

* **on**: protection starts with the first Establish of a device that
  redirects the default route.  That client is *engaged*.
* A deliberate end (Destroy or Disable of its last such device) starts the
  grace time: protection holds, for a reconnect, until the client leaves
  the bus or the grace passes with no new Establish from it.
* A client that vanishes without Destroy (its devices torn down because
  it left the bus or died) leaves protection **held**: until a new
  redirecting tunnel is established (by anyone) or an admin releases it.
* **lockdown**: the table exists always; engagements only explain it.

Every live tunnel of netcfg may carry traffic, redirecting or not; the
switch knows them by device, with the ifindex the rules match.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Callable


class Mode(str, enum.Enum):
    OFF = "off"
    ON = "on"
    LOCKDOWN = "lockdown"


class State(str, enum.Enum):
    OFF = "off"
    ACTIVE = "active"
    HELD = "held"
    LOCKDOWN = "lockdown"


@dataclass(frozen=True)
class Tunnel:
    device: str  # the device's object path
    ifname: str
    ifindex: int
    owner: str  # the client's bus unique name
    redirects: bool


@dataclass
class Engagement:
    """One client's part in keeping protection on."""

    owner: str
    pid: int
    devices: set[str] = field(default_factory=set)  # its redirecting tunnels, up
    ending_since: float | None = None  # deliberate end, grace running
    held_since: float | None = None  # vanished without Destroy
    last: str = ""  # the tunnel that engaged it, for the reason


class KillSwitch:
    def __init__(self, mode: Mode, grace: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.mode, self.grace, self.clock = mode, grace, clock
        self.tunnels: dict[str, Tunnel] = {}
        self.engagements: dict[str, Engagement] = {}

    # -- what happened --------------------------------------------------
    def established(self, tunnel: Tunnel, pid: int) -> None:
        self.tunnels[tunnel.device] = tunnel
        if not tunnel.redirects or self.mode is Mode.OFF:
            return
        # A new tunnel that carries everything ends every hold: traffic has a way again.
        for owner in [o for o, e in self.engagements.items() if e.held_since is not None]:
            del self.engagements[owner]
        e = self.engagements.setdefault(tunnel.owner, Engagement(tunnel.owner, pid))
        e.devices.add(tunnel.device)
        e.ending_since = None
        e.last = tunnel.ifname

    def hold(self, why: str) -> None:
        """Held without a client: the table a crashed run of netcfg left (fail closed)."""
        if self.mode is Mode.ON:
            self.engagements[why] = Engagement(why, 0, held_since=self.clock())

    def torn_down(self, device: str, deliberate: bool) -> None:
        """A device's tunnel is gone: `deliberate` when its client asked
        (Destroy, Disable, Cleanup), not when the client vanished."""
        tunnel = self.tunnels.pop(device, None)
        e = self.engagements.get(tunnel.owner) if tunnel else None
        if e is None or device not in e.devices:
            return
        e.devices.discard(device)
        if e.devices:
            return
        if deliberate:
            e.ending_since = self.clock()
        else:
            e.held_since = self.clock()

    def owner_gone(self, owner: str) -> None:
        """The client left the bus (after its devices were torn down)."""
        e = self.engagements.get(owner)
        if e is not None and not e.devices and e.held_since is None:
            del self.engagements[owner]  # ended deliberately, and gone: done

    def expire(self) -> bool:
        """Drop engagements whose grace has passed; whether anything changed."""
        now = self.clock()
        done = [o for o, e in self.engagements.items()
                if e.ending_since is not None and not e.devices and now - e.ending_since >= self.grace]
        for owner in done:
            del self.engagements[owner]
        return bool(done)

    def release(self) -> bool:
        """An admin's release: every engagement without a tunnel ends."""
        done = [o for o, e in self.engagements.items() if not e.devices]
        for owner in done:
            del self.engagements[owner]
        return bool(done)

    def next_deadline(self) -> float | None:
        """When the earliest grace ends (clock time), None if none runs."""
        ends = [e.ending_since + self.grace for e in self.engagements.values()
                if e.ending_since is not None and not e.devices]
        return min(ends, default=None)

    # -- what follows ---------------------------------------------------
    def status(self) -> tuple[State, str]:
        if self.mode is Mode.OFF:
            return State.OFF, "leak-protection is off"
        engaged = list(self.engagements.values())
        active = [e for e in engaged if e.devices]
        held = [e for e in engaged if e.held_since is not None]
        ending = [e for e in engaged if e.ending_since is not None and not e.devices]
        if self.mode is Mode.LOCKDOWN:
            up = ", ".join(sorted(t.ifname for t in self.tunnels.values())) or "no tunnel"
            return State.LOCKDOWN, f"lockdown (configured); tunnels: {up}"
        if active:
            e = active[0]
            return State.ACTIVE, f"{e.last} of {e.owner} (pid {e.pid}) redirects the default route"
        if held:
            e = held[0]
            who = e.owner if not e.pid else f"{e.owner} (pid {e.pid}) vanished without Destroy"
            return State.HELD, f"{who}; held until a new tunnel is established or an admin releases it"
        if ending:
            e = ending[0]
            return State.ACTIVE, (f"{e.owner} (pid {e.pid}) disconnected; waiting {self.grace:g} s for it to "
                                  "reconnect or leave the bus")
        return State.OFF, "no tunnel redirects the default route"

    def needs_table(self) -> bool:
        return self.status()[0] is not State.OFF

    def tunnel_indexes(self) -> frozenset[int]:
        return frozenset(t.ifindex for t in self.tunnels.values())
