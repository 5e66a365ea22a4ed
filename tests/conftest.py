"""Shared fixtures of the netcfg test suite.

Everything runs as root (namespaces, other UIDs, a system-type bus): the
session fails at once otherwise.  The helpers live in ``tests/support``
(importable as ``support``).  ``tests/dco`` is collected only inside the
DCO VM (``NETCFG_DCOVM`` set; ``scripts/dco-tests.sh``).

Session-scoped, synchronous (usable from any loop scope):

* ``users`` -> ``support.users.Users`` (``.openvpn``, ``.unprivileged``;
  each ``.name``, ``.uid``, ``.gid``); the system users exist.
* ``bus`` -> ``support.busdaemon.BusDaemon``: the private system-type
  dbus-daemon with our policy (``bus.address`` is ``unix:path=...``).
* ``bus_address`` -> ``str``.

Function-scoped:

* ``bus_policy(name, xml) -> Path``: add a policy snippet to the session bus
  (e.g. for a stand-in ``net.openvpn.v3.log``); removed after the test.
* ``netns`` -> ``support.netns.Netns``: a fresh namespace, ``lo`` up.
  ``@pytest.mark.netns(uplink=True)`` adds the veth uplink to a router
  namespace (``netns.router``).
* ``service`` (async) -> ``support.service.ServiceProcess``: netcfg running
  in ``netns`` on ``bus``, name owned.  Options via
  ``@pytest.mark.service(private_tun=False, extra_args=[...], log_level=6)``.
* ``service_factory`` (async) -> ``async start(**options) ->
  ServiceProcess``: for tests that start (or restart) the service
  themselves; the marker's options plus ``timeout`` (name wait, 10 s, in
  the DCO VM 60 s) and ``env`` (the service's whole environment; default:
  ours).
* ``root_bus`` (async) -> ``dbus_fast.aio.MessageBus`` connected as root to
  ``bus`` (``negotiate_unix_fd=True``).

The async fixtures use the default function-scoped event loop: tests using
them are marked ``@pytest.mark.asyncio`` (no ``loop_scope``), because a
fixture and its test must share one loop (see shared/notes/dependencies.md
section 3).

After each test using the service, the fixture (errors at teardown):
* unless the test stopped it itself (``svc.terminate()``, ``svc.kill()``,
  ``svc.stop()``, ``svc.signal(SIGTERM|SIGKILL|SIGINT)``; then it must be
  gone within 10 s, whatever its exit code): checks it is alive, answers
  Peer.Ping on /net/openvpn/v3/netcfg, and logged no Traceback; then sends
  SIGTERM and requires exit code 0 within 10 s;
* requires no Traceback in its log or output;
* leak check on the namespace: no links but ``lo`` (and ``uplink0``), no
  route with protocol 111 in any table, no rule that was not there before.
The service's directory (log, state) is kept and printed when the test
failed, removed otherwise.
"""

from __future__ import annotations

# hypothesis is imported here, early, on purpose: its pytest plugin imports
# it lazily in the terminal summary, and CPython 3.11.7's ast.parse (pytest's
# assertion rewriting) can then fail with "AST constructor recursion depth
# mismatch" (fixed in CPython 3.11.8) when only service tests ran.

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import hypothesis  # noqa: F401
import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dbus_fast.aio import MessageBus  # noqa: E402

from support.busdaemon import BusDaemon  # noqa: E402
from support.netns import Netns  # noqa: E402
from support.service import ServiceError, ServiceProcess  # noqa: E402
from support.users import ensure_users  # noqa: E402


# tests/dco needs a real DCO module (ovpn-dco-v2 or ovpn), which only the DCO VM has
# (scripts/dco-tests.sh; its guest sets NETCFG_DCOVM=1): elsewhere the
# directory is not collected at all, and the summary says so.
IN_DCOVM = bool(os.environ.get("NETCFG_DCOVM"))
# tests/sysvm installs the package on the machine it runs on: only in the
# guest of scripts/sysvm-tests.sh (systemd as PID 1; NETCFG_SYSVM=1).
IN_SYSVM = bool(os.environ.get("NETCFG_SYSVM"))
collect_ignore = ([] if IN_DCOVM else ["dco"]) + ([] if IN_SYSVM else ["sysvm"])
# How long service_factory waits for the service to own its name.  The VM
# emulates its CPU (TCG): importing dbus_fast and pyroute2 alone takes 3-8 s
# there, the service's whole start 7-10 s.
SERVICE_START_TIMEOUT = 60.0 if IN_DCOVM else 10.0


def pytest_terminal_summary(terminalreporter) -> None:
    if not IN_DCOVM:
        terminalreporter.write_line(
            "tests/dco is collected only in the DCO VM: scripts/dco-tests.sh"
        )
    if not IN_SYSVM:
        terminalreporter.write_line(
            "tests/sysvm is collected only in the real-system VM: scripts/sysvm-tests.sh"
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "netns(uplink=False): options of the netns fixture"
    )
    config.addinivalue_line(
        "markers",
        "service(private_tun=False, extra_args=(), log_level=6): options of the "
        "service fixture",
    )
    if os.geteuid() != 0:
        raise pytest.UsageError(
            "the netcfg tests must run as root (network namespaces, a system-type "
            "dbus-daemon, clients as other users): run `sudo scripts/test.sh`"
        )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def _failed(request: pytest.FixtureRequest) -> bool:
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


# -- session -----------------------------------------------------------
@pytest.fixture(scope="session")
def users():
    return ensure_users()


@pytest.fixture(scope="session")
def bus(users):
    # The users must exist first: policies naming unknown users are dropped.
    daemon = BusDaemon()
    daemon.start()
    yield daemon
    alive = daemon.running
    daemon.cleanup()
    assert alive, "the test dbus-daemon died during the session:\n" + daemon.log_text()


@pytest.fixture(scope="session")
def bus_address(bus) -> str:
    return bus.address


@pytest.fixture
def bus_policy(bus):
    added = []

    def add(name: str, xml: str) -> Path:
        path = bus.add_policy(name, xml)
        added.append(path)
        return path

    yield add
    if added:
        for p in added:
            p.unlink(missing_ok=True)
        bus.reload()


# -- per test ----------------------------------------------------------
@pytest.fixture
def netns(request):
    marker = request.node.get_closest_marker("netns")
    opts = dict(marker.kwargs) if marker else {}
    ns = Netns.create()
    try:
        if opts.pop("uplink", False):
            ns.add_uplink()
        if opts:
            raise pytest.UsageError(f"unknown netns marker options {opts}")
        yield ns
    finally:
        ns.delete()


@pytest_asyncio.fixture
async def root_bus(bus):
    conn = await MessageBus(bus_address=bus.address, negotiate_unix_fd=True).connect()
    yield conn
    conn.disconnect()
    await conn.wait_for_disconnect()


class _Tracked(ServiceProcess):
    """ServiceProcess remembering whether the test signalled it."""

    stopped_by_test = False

    def signal(self, sig: int) -> None:
        if sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
            self.stopped_by_test = True
        super().signal(sig)


def _first(e: Exception) -> str:
    return str(e).split("\n", 1)[0]


def _leaks(ns: Netns, rules_before) -> list[str]:
    problems = []
    allowed = {"lo"} | ({ns.uplink} if ns.uplink else set())
    extra = [n for n in ns.link_names() if n not in allowed]
    if extra:
        problems.append(f"links left in {ns.name}: {extra}")
    routes = ns.netcfg_routes()
    if routes:
        problems.append(f"routes with protocol 111 left in {ns.name}: {routes}")
    new_rules = [r for r in ns.snapshot()["rules"] if r not in rules_before]
    if new_rules:
        problems.append(f"rules added in {ns.name}: {[dict(r) for r in new_rules]}")
    return problems


@pytest_asyncio.fixture
async def service_factory(request, bus, netns):
    started: list[_Tracked] = []
    rules_before = netns.snapshot()["rules"]

    async def start(
        *, extra_args=(), private_tun=False, log_level=6, timeout=SERVICE_START_TIMEOUT, env=None
    ) -> ServiceProcess:
        d = Path(tempfile.mkdtemp(prefix="netcfg-svc-"))
        os.chmod(d, 0o755)
        svc = _Tracked(
            bus.address,
            netns.name,
            d,
            extra_args=extra_args,
            private_tun=private_tun,
            log_level=log_level,
            env=env,
        )
        started.append(svc)
        await svc.start(timeout)
        return svc

    yield start

    problems: list[str] = []
    for svc in started:
        try:
            if svc.proc is None:
                continue
            if svc.stopped_by_test:
                # The test sent SIGTERM/SIGKILL itself: its exit code is the
                # test's business; it must be gone, though.
                if await svc.wait(10) is None:
                    problems.append("still running 10 s after the test stopped it")
            else:
                try:
                    await svc.assert_healthy()
                except ServiceError as e:
                    problems.append(f"not healthy after the test: {_first(e)}")
            if svc.alive():
                try:
                    rc = await svc.stop()
                    if rc != 0:
                        problems.append(f"exit code {rc} after SIGTERM (want 0)")
                except ServiceError as e:
                    problems.append(_first(e))
            if "Traceback" in svc.log_text() + svc.output_text():
                problems.append("Traceback in the service's log or output")
        finally:
            svc.kill()
            await svc.wait(5)
    problems += _leaks(netns, rules_before)
    failed = _failed(request) or bool(problems)
    for svc in started:
        if failed:
            sys.stderr.write(f"\nnetcfg files kept in {svc.dir}\n")
        else:
            shutil.rmtree(svc.dir, ignore_errors=True)
    if problems:
        diag = "\n".join(svc.diagnostics() for svc in started)
        pytest.fail("service teardown:\n- " + "\n- ".join(problems) + "\n" + diag)


@pytest_asyncio.fixture
async def service(request, service_factory):
    marker = request.node.get_closest_marker("service")
    opts = dict(marker.kwargs) if marker else {}
    return await service_factory(**opts)
