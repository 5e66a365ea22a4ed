"""netcfg's nftables table as a kernel object: replaced whole, in one
transaction, touching no other table (real nf_tables in a namespace)."""

from __future__ import annotations

import ipaddress
import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings

from netcfg.kernel.nftspec import TableContent
from netcfg.leak.rules import COUNTERS, LeakRules, ruleset
from support.leakpolicies import policies
from support.nsenter import in_netns

pytestmark = pytest.mark.asyncio

FOREIGN = """
table inet foreign {
    chain early { type filter hook output priority -300; policy accept; accept; }
    chain late { type filter hook output priority 300; policy accept; accept; }
    chain passing { type filter hook forward priority -300; policy accept; accept; }
}
table ip netcfg {
    chain out { type filter hook output priority 0; policy accept; accept; }
}
"""


def nft(netns, *args: str, input: str | None = None) -> str:
    return netns.run(["nft", *args], input=input).stdout


def foreign_state(netns) -> list:
    """Both foreign tables, handles included: nothing of theirs may change."""
    return [json.loads(nft(netns, "-j", "-a", "list", "table", fam, name))["nftables"][1:]
            for fam, name in (("inet", "foreign"), ("ip", "netcfg"))]


def udp_out(netns, dst: str = "192.0.2.1", count: int = 3) -> int:
    """Send `count` datagrams from the namespace; how many sendto() calls were refused."""
    def send() -> int:
        refused = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(count):
                try:
                    s.sendto(b"x", (dst, 9))
                except PermissionError:
                    refused += 1
        return refused
    return in_netns(netns.name, send)


@pytest.mark.netns(uplink=True)
async def test_our_drop_holds_against_an_accept_all_table_which_stays_unchanged(netns, leak_table):
    nft(netns, "-f", "-", input=FOREIGN)
    before = foreign_state(netns)
    await leak_table.apply(LeakRules())
    assert udp_out(netns) == 3  # accept elsewhere does not undo a drop here
    await leak_table.apply(LeakRules(allow_lan=True, lan=(ipaddress.ip_network("192.0.2.0/24"),)))
    assert udp_out(netns) == 0
    await leak_table.remove()
    assert foreign_state(netns) == before
    assert leak_table.listing() == ""


@pytest.mark.netns(uplink=True)
async def test_the_table_outlives_the_process_that_made_it(netns, leak_table):
    """No `owner` flag: closing libnftables' socket (as a SIGKILL of the
    service would) leaves the table, and the host fails closed."""
    await leak_table.apply(LeakRules())
    leak_table.nft.close()
    assert "chain leak_output" in leak_table.listing()
    assert "flags" not in leak_table.listing()
    assert udp_out(netns) == 3


@pytest.mark.netns(uplink=True)
async def test_drop_counters_survive_a_replace(netns, leak_table):
    await leak_table.apply(LeakRules())
    udp_out(netns, count=5)
    await leak_table.apply(LeakRules(tunnels=frozenset({7})))
    assert (await leak_table.counters())["leak_output_ipv4"].packets == 5


async def test_replace_removes_what_the_content_no_longer_has(netns, leak_table):
    """A table left by another version (a chain at another priority, an extra
    chain and counter) holds exactly the new content after one replace."""
    nft(netns, "-f", "-", input="""
        table inet netcfg {
            counter old {}
            chain old_chain { accept; }
            chain leak_output { type filter hook output priority 10; policy accept; jump old_chain; }
        }""")
    await leak_table.apply(LeakRules(allow_lan=True))
    listing = leak_table.listing()
    assert "old" not in listing
    assert "hook output priority filter; policy drop;" in listing
    await leak_table.apply(LeakRules())
    assert "chain leak_lan" not in leak_table.listing()
    assert set(await leak_table.counters()) == set(COUNTERS)


async def test_remove_is_idempotent(netns, leak_table):
    await leak_table.remove()
    await leak_table.apply(LeakRules())
    await leak_table.remove()
    await leak_table.remove()
    assert leak_table.listing() == ""
    assert await leak_table.counters() == {}


async def test_calls_run_off_the_event_loop_thread(netns, leak_table):
    import threading

    loop_thread = threading.get_ident()
    seen = []
    await leak_table.nft.call(lambda: seen.append(threading.get_ident()))
    assert seen and seen[0] != loop_thread


def kernel_rule_count(netns) -> int:
    items = json.loads(nft(netns, "-j", "list", "table", "inet", "netcfg"))["nftables"]
    return sum(1 for i in items if "rule" in i)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=policies(tunnels=5, lan=8, shortest=8))
async def test_the_kernel_takes_every_plan(netns, leak_table, policy):
    """Whatever the policy, nf_tables accepts the plan and holds exactly its rules."""
    content: TableContent = ruleset(policy)
    await leak_table.apply(policy)
    assert kernel_rule_count(netns) == content.rule_count()



async def test_a_table_changed_behind_our_back_is_read_again(netns, leak_table):
    """The next replace is built on what this context last installed; when
    someone deleted the table meanwhile, that batch is refused and the
    replace reads the table and succeeds."""
    await leak_table.apply(LeakRules(allow_lan=True))
    nft(netns, "delete", "table", "inet", "netcfg")
    await leak_table.apply(LeakRules())  # would delete chain leak_lan: gone already
    listing = leak_table.listing()
    assert "chain leak_output" in listing and "chain leak_lan" not in listing
