"""The kill switch's decisions (netcfg/leak/switch.py): when protection holds and why."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from netcfg.leak.switch import KillSwitch, Mode, State, Tunnel


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tun(n: int, owner: str = ":1.5", redirects: bool = True) -> Tunnel:
    return Tunnel(f"/dev/{n}", f"tun{n}", 100 + n, owner, redirects)


def switch(mode: Mode = Mode.ON, grace: float = 30) -> tuple[KillSwitch, Clock]:
    clock = Clock()
    return KillSwitch(mode, grace, clock), clock


def test_on_starts_with_a_redirecting_establish_only():
    s, _ = switch()
    assert s.status()[0] is State.OFF and not s.needs_table()
    s.established(tun(0, redirects=False), pid=7)
    assert not s.needs_table()
    s.established(tun(1), pid=7)
    state, reason = s.status()
    assert state is State.ACTIVE and "tun1 of :1.5 (pid 7)" in reason
    assert s.tunnel_indexes() == {100, 101}  # every live tunnel may carry traffic


def test_reconnect_within_grace_never_opens():
    s, clock = switch()
    s.established(tun(0), 7)
    s.torn_down("/dev/0", deliberate=True)
    assert s.needs_table() and s.tunnel_indexes() == frozenset()
    assert "waiting 30 s" in s.status()[1]
    clock.now += 29
    assert not s.expire() and s.needs_table()
    s.established(tun(1), 7)
    clock.now += 100
    s.expire()
    assert s.status()[0] is State.ACTIVE


def test_deliberate_end_opens_when_the_client_leaves_or_the_grace_passes():
    s, clock = switch()
    s.established(tun(0), 7)
    s.torn_down("/dev/0", deliberate=True)
    s.owner_gone(":1.5")
    assert s.status()[0] is State.OFF
    s.established(tun(1), 7)
    s.torn_down("/dev/1", deliberate=True)
    assert s.next_deadline() == clock.now + 30
    clock.now += 30
    assert s.expire() and not s.needs_table()


def test_a_vanished_client_holds_until_a_new_tunnel_or_a_release():
    s, clock = switch()
    s.established(tun(0), 7)
    s.torn_down("/dev/0", deliberate=False)
    s.owner_gone(":1.5")
    clock.now += 10_000
    s.expire()
    state, reason = s.status()
    assert state is State.HELD and "vanished without Destroy" in reason
    s.established(tun(1, owner=":1.9", redirects=False), 8)  # a split tunnel does not end it
    assert s.status()[0] is State.HELD
    s.established(tun(2, owner=":1.9"), 8)
    assert s.status()[0] is State.ACTIVE and set(s.engagements) == {":1.9"}
    s.torn_down("/dev/2", deliberate=False)
    assert s.release() and s.status()[0] is State.OFF


def test_lockdown_always_has_a_table_and_off_never():
    s, _ = switch(Mode.LOCKDOWN)
    assert s.status() == (State.LOCKDOWN, "lockdown (configured); tunnels: no tunnel")
    s.established(tun(0), 7)
    assert s.status()[1].endswith("tunnels: tun0")
    s.torn_down("/dev/0", deliberate=False)
    s.release()
    assert s.needs_table()
    off, _ = switch(Mode.OFF)
    off.established(tun(0), 7)
    off.torn_down("/dev/0", deliberate=False)
    assert not off.needs_table() and off.engagements == {}


class Sequences(RuleBasedStateMachine):
    """Any order of events: a crash never opens without a new tunnel or a
    release, a reconnect inside the grace never opens, and a client that
    ended deliberately and left never keeps protection alone."""

    def __init__(self) -> None:
        super().__init__()
        self.s, self.clock = switch(grace=30)
        self.up: dict[str, str] = {}  # device -> owner
        self.n = 0
        self.crashed = False  # a vanished client, not yet superseded or released

    @rule(owner=st.sampled_from([":1.1", ":1.2"]), redirects=st.booleans())
    def establish(self, owner, redirects):
        self.n += 1
        t = tun(self.n, owner, redirects)
        self.s.established(t, 1)
        self.up[t.device] = owner
        if redirects:
            self.crashed = False

    @precondition(lambda self: self.up)
    @rule(data=st.data(), deliberate=st.booleans())
    def tear_down(self, data, deliberate):
        device = data.draw(st.sampled_from(sorted(self.up)))
        owner = self.up.pop(device)
        redirecting = any(e.owner == owner and device in e.devices for e in self.s.engagements.values())
        was_last = redirecting and len(self.s.engagements[owner].devices) == 1
        self.s.torn_down(device, deliberate)
        if was_last and not deliberate:
            self.crashed = True

    @rule(owner=st.sampled_from([":1.1", ":1.2"]))
    def leave(self, owner):
        if not any(o == owner for o in self.up.values()):
            self.s.owner_gone(owner)

    @rule(seconds=st.floats(0, 100))
    def wait(self, seconds):
        self.clock.now += seconds
        self.s.expire()

    @rule()
    def release(self):
        self.s.release()
        self.crashed = False  # the admin ended the hold

    @invariant()
    def crash_holds(self):
        if self.crashed:
            assert self.s.needs_table()

    @invariant()
    def redirecting_tunnel_holds(self):
        if any(e.devices for e in self.s.engagements.values()):
            assert self.s.status()[0] is State.ACTIVE

    @invariant()
    def tunnels_are_the_live_ones(self):
        assert self.s.tunnel_indexes() == {100 + int(d.rsplit("/", 1)[1]) for d in self.up}


TestSequences = Sequences.TestCase


def test_a_table_left_by_a_crashed_run_is_held():
    s, _ = switch()
    s.hold("a previous run of netcfg ended without stopping")
    state, reason = s.status()
    assert state is State.HELD and reason.startswith("a previous run of netcfg ended without stopping; held")
    s.established(tun(0), 7)
    assert s.status()[0] is State.ACTIVE and set(s.engagements) == {":1.5"}
    lockdown, _ = switch(Mode.LOCKDOWN)
    lockdown.hold("x")
    assert lockdown.engagements == {}
