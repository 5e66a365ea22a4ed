"""Session.teardown always finishes (issue 15, item 2): a failure at any
step, or at all of them, stops none of the others; the errors come back
together; what the kernel refused is journaled for the next start; the
session ends DESTROYED, out of the tunnel table, its fds closed.

The failures are real where they can be provoked: the kernel refuses to
delete an IPv4 route of prefix 33 and an IPv6 address of prefix 200
(EINVAL) and the loopback link (EOPNOTSUPP); the resolv.conf backend
cannot put the original back once its directory is gone.  A session hook
that raises is a hook that raises.

Stand-ins, because a kernel test cannot do better: the session's
established state (a tun with an address and a route, made with `ip`) is
put in place by the test, since nothing can open a tun in the test's
namespace for it; its DCO channel's link is a bridge, since this
machine has no DCO module (tests/dco covers the real ones in the VM).
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

from netcfg.context import Owner, Transition
from netcfg.dco.channel import DcoChannel
from netcfg.dco.families import FAMILIES
from netcfg.dns.order import DnsManager
from netcfg.dns.resolv_conf import ResolvConfBackend
from netcfg.kernel.address import AddressOnLink, TunnelAddress
from netcfg.kernel.ledger import Ledger
from netcfg.kernel.link import TunLink
from netcfg.kernel.route import Route
from netcfg.process import ClientProcess
from netcfg.session import Session, State
from netcfg.state import Journal

pytestmark = pytest.mark.asyncio

STEPS = ("hooks", "dns", "kernel", "netlink", "dco")
ORIGINAL = "nameserver 192.0.2.53\n"


def refused_route(ifindex: int) -> Route:
    return Route(socket.AF_INET, "198.18.9.0", 33, ifindex, "10.200.0.1")  # EINVAL


def refused_address(ifindex: int) -> AddressOnLink:
    return AddressOnLink(ifindex, TunnelAddress("fd00:200::9", 200, "", True))  # EINVAL


LOOPBACK = TunLink(1, "lo", "")  # EOPNOTSUPP: the kernel never deletes lo


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def make_session(context, kernel_netns, kernel_tun, tmp_path, failing: set[str]):
    i, name = kernel_tun.index, kernel_tun.name
    await kernel_netns.ip_async("route", "add", "192.0.2.0/24", "dev", name, "proto", "111")
    await kernel_netns.ip_async("link", "add", "dco0", "type", "bridge")
    dummy = (await kernel_netns.ip_json("link", "show", "dco0"))[0]["ifindex"]

    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "resolv.conf").write_text(ORIGINAL)
    context.dns = DnsManager(ResolvConfBackend(str(etc / "resolv.conf"), str(tmp_path / "dns-state")))
    await context.dns.start()

    told = []

    async def hook(event):
        told.append(event.transition)
        if "hooks" in failing and event.transition in (Transition.DESTROYED, Transition.LOST):
            raise RuntimeError("the hook could not let go")

    context.hooks.append(hook)
    session = Session(context, "/net/openvpn/v3/netcfg/1_t", "t", Owner(0, os.getpid(), ":1.1"),
                      ClientProcess(os.getpid()))
    session.told = told
    await session.add_dns_servers(["10.8.0.53"])
    await context.dns.enable(session.dns, name)
    assert "10.8.0.53" in (etc / "resolv.conf").read_text()

    link = TunLink(i, name)
    ledger = Ledger(context.journal.new_key(session.key), context.nl, context.journal)
    entries = [link, AddressOnLink(i, TunnelAddress("10.200.0.2", 24, "", False)),
               Route(socket.AF_INET, "192.0.2.0", 24, i)]
    if "kernel" in failing:  # between the real ones: the undo must go past them
        entries[1:1] = [refused_address(i)]
        entries[-1:-1] = [refused_route(i)]
    await ledger.record(entries)
    session.ledger, session.link, session.state = ledger, link, State.ESTABLISHED
    context.tunnels.add(i, session)

    dco_ledger = Ledger(context.journal.new_key(f"{session.key}.dco"), context.nl, context.journal)
    dco_link = TunLink(dummy, "dco0", "bridge")
    await dco_ledger.record([LOOPBACK, dco_link] if "dco" in failing else [dco_link])
    channel = DcoChannel(FAMILIES["ovpn"], dco_link, dco_ledger)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        channel.transports[1] = os.dup(udp.fileno())  # what NewPeer keeps
    session.dco = channel
    if "dns" in failing:
        shutil.rmtree(etc)  # the original cannot be put back: its directory is gone
    if "netlink" in failing:
        context.nl.routes.close()  # route deletes now fail outright (ConnectionError), not one by one
    return session


@pytest.mark.parametrize("failing", [set(), *({s} for s in STEPS), set(STEPS)],
                         ids=["none", *STEPS, "all"])
async def test_teardown_runs_every_step_whatever_failed(context, kernel_netns, kernel_tun, tmp_path, failing):
    await context.nl.ipr.link("get", index=1)  # pyroute2 opens its socket at the first request
    fds_before = open_fds()
    session = await make_session(context, kernel_netns, kernel_tun, tmp_path, failing)

    errors = await session.teardown()

    # The errors, together, one per refusal.
    expected = {"hooks": 1, "dns": 1, "kernel": 2, "dco": 1, "netlink": 1}
    assert len(errors) == sum(expected[s] for s in failing), errors
    if "kernel" in failing or "dco" in failing:
        assert {getattr(e, "errno", None) for e in errors} >= ({22} if "kernel" in failing else {95})
    assert session.told == [Transition.DESTROYED]

    # The session is over, whatever failed.
    assert session.state is State.DESTROYED
    assert session.ledger is None and len(context.tunnels) == 0
    assert session.dco.closed and session.dco.our_end.fileno() == -1 and session.dco.transports == {}

    # Nothing of it is left in the kernel (what was refused never existed, or is lo).
    assert {link["ifname"] for link in await kernel_netns.ip_json("link", "show")} == {"lo"}
    assert await kernel_netns.ip_json("route", "show", "table", "all", "proto", "111") == []

    # What was refused is journaled for the next start; nothing else is.
    left = {key: objects for key, objects in Journal(context.journal.dir).leftovers().items()}
    refused = []
    tun_refused = []
    if "kernel" in failing:
        tun_refused += [refused_address(kernel_tun.index), refused_route(kernel_tun.index)]
    if "netlink" in failing:
        tun_refused.append(Route(socket.AF_INET, "192.0.2.0", 24, kernel_tun.index))
    if tun_refused:
        refused.append(sorted(map(str, tun_refused)))
    if "dco" in failing:
        refused.append([str(LOOPBACK)])
    assert sorted(sorted(map(str, objects)) for objects in left.values()) == sorted(refused)
    assert all(key.endswith(".undeleted") for key in left)

    # DNS: given back, unless its directory is gone.
    if "dns" not in failing:
        assert (tmp_path / "etc" / "resolv.conf").read_text() == ORIGINAL
    await context.dns.stop()
    assert context.dns.live == []

    await context.journal.sync()  # the journal keeps a written file's fd until it is durable
    # No fd of the session is left open (its pidfd, the DCO pipe ends, the transport's dup).
    assert open_fds() - fds_before == set(), {f: os.readlink(f"/proc/self/fd/{f}") for f in open_fds() - fds_before}
    assert await session.teardown() == []  # once only
