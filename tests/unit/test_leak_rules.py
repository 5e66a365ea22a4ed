"""The leak-protection planner (netcfg/leak/rules.py) and the replace batch
(netcfg/kernel/nftspec.py): pure functions, no kernel."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given, strategies as st

from netcfg.kernel.libnft import errno_of
from netcfg.kernel.nftspec import Chain, Hook, Present, Rule, TableContent, one_or_set, replace_commands
from netcfg.leak.rules import COUNTERS, DROPPED, FORWARD, LAN, OUTPUT, LeakRules, lan_networks, ruleset
from support import leakpolicies

policies = leakpolicies.policies()


def chain(content: TableContent, name: str) -> Chain:
    return next(c for c in content.chains if c.name == name)


def text(rule: Rule) -> str:
    return json.dumps(rule.expr)


@given(policies)
def test_rule_count_does_not_grow_with_tunnels_networks_or_marks(policy):
    """At most one rule per kind of traffic: sizes only change set elements."""
    flags = LeakRules(tunnels=frozenset({1}) if policy.tunnels else frozenset(),
                      marks=frozenset({1}) if policy.marks else frozenset(),
                      uplinks=frozenset({"x"}) if policy.uplinks else frozenset(), allow_lan=policy.allow_lan)
    assert ruleset(policy).rule_count() == ruleset(flags).rule_count() <= 18  # 10 output, 6 forward, 2 LAN


@given(policies)
def test_base_chains_fail_closed_and_end_with_counted_drops(policy):
    content = ruleset(policy)
    for name, hook in ((OUTPUT, "output"), (FORWARD, "forward")):
        c = chain(content, name)
        assert c.hook == Hook("filter", hook, 0, "drop")
        last = c.rules[-2:]
        for rule, family in zip(last, ("ipv4", "ipv6")):
            assert rule.expr[-2:] == ({"counter": DROPPED[name, family]}, {"drop": None})
            assert {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": family}} in rule.expr
        assert all({"drop": None} not in r.expr for r in c.rules[:-2])  # nothing else decides to drop
    assert content.counters == COUNTERS


@given(policies)
def test_what_is_allowed_is_exactly_what_the_policy_names(policy):
    content = ruleset(policy)
    out = chain(content, OUTPUT)
    assert text(out.rules[0]) == json.dumps([{"match": {"op": "==", "left": {"meta": {"key": "oif"}}, "right": "lo"}},
                                             {"accept": None}])
    everything = " ".join(text(r) for c in content.chains for r in c.rules)
    tunnel_rules = [r for c in content.chains for r in c.rules if r.comment == "netcfg tunnels"]
    if policy.tunnels:
        for rule in tunnel_rules:
            assert rule.expr[0]["match"]["right"] == one_or_set(sorted(policy.tunnels))
    assert len(tunnel_rules) == (2 if policy.tunnels else 0)  # output and forward
    assert ('"key": "mark"' in everything) == bool(policy.marks)
    assert ('"key": "oifname"' in everything) == bool(policy.uplinks)
    assert any(c.name == LAN for c in content.chains) == policy.allow_lan
    forward = chain(content, FORWARD)
    assert not any("mark" in text(r) or "sport" in text(r) for r in forward.rules)  # host-only exceptions


@given(policies.filter(lambda p: p.allow_lan))
def test_the_lan_never_gets_dns(policy):
    lan = chain(ruleset(policy), LAN)
    dns, rest = lan.rules
    assert '"dport"}}, "right": {"set": [53, 853]}' in text(dns) and dns.expr[-1] == {"drop": None}
    assert rest.expr == ({"accept": None},)


@given(st.lists(leakpolicies.networks(), max_size=60))
def test_lan_sets_are_collapsed_and_include_link_local_multicast(nets):
    v4, v6 = lan_networks(nets)
    for group in (v4, v6):
        assert all(not a.overlaps(b) for i, a in enumerate(group) for b in group[i + 1:])
    assert any(ipaddress.ip_address("224.0.0.251") in n for n in v4)
    assert any(ipaddress.ip_address("ff02::fb") in n for n in v6)
    for n in nets:
        assert any(n.subnet_of(m) for m in (v4 if n.version == 4 else v6))


# -- the replace batch ---------------------------------------------------
CONTENT = TableContent(
    (Chain("base", (Rule(({"accept": None},), "a"),), Hook("filter", "output", 0, "drop")),
     Chain("helper", (Rule(({"accept": None},)),))),
    ("c1",),
)
present_states = st.builds(
    Present,
    chains=st.dictionaries(
        st.sampled_from(["base", "helper", "stale", "other"]),
        st.sampled_from([{}, {"type": "filter", "hook": "output", "prio": 0}, {"type": "filter", "hook": "output", "prio": 10}]),
    ),
    counters=st.frozensets(st.sampled_from(["c1", "c2"])),
)


@given(present_states)
def test_replace_is_one_batch_on_our_table_only(present):
    cmds = replace_commands("inet", "ours", CONTENT, present)
    for cmd in cmds:
        (verb, body), = cmd.items()
        (kind, obj), = body.items()
        assert obj["family"] == "inet" and obj.get("table", obj.get("name")) == "ours"
        assert kind != "ruleset" and not (kind == "table" and verb == "delete")
    verbs = [(next(iter(c)), next(iter(next(iter(c.values()))))) for c in cmds]
    flush = verbs.index(("flush", "table"))
    assert verbs[0] == ("add", "table")
    assert all(v != ("add", "rule") for v in verbs[:flush])  # rules only after the flush
    assert verbs.count(("add", "rule")) == 2
    deleted = {c["delete"]["chain"]["name"] for c in cmds if "chain" in c.get("delete", {})}
    assert deleted >= set(present.chains) - {"base", "helper"}
    assert all(verbs.index(("flush", "table")) < i for i, c in enumerate(cmds) if "delete" in c)
    assert {c["delete"]["counter"]["name"] for c in cmds if "counter" in c.get("delete", {})} == present.counters - {"c1"}


def test_a_chain_hung_elsewhere_is_deleted_and_added_again():
    present = Present({"base": {"type": "filter", "hook": "output", "prio": 10}, "helper": {}})
    cmds = replace_commands("inet", "ours", CONTENT, present)
    names = [(next(iter(c)), c[next(iter(c))].get("chain", {}).get("name")) for c in cmds]
    assert names.index(("delete", "base")) < names.index(("add", "base")) > names.index(("flush", None))
    assert ("delete", "helper") not in names


def test_merge_refuses_two_parts_with_one_name():
    with pytest.raises(ValueError, match="base"):
        CONTENT.merge(TableContent((Chain("base"),)))
    assert len(CONTENT.merge(TableContent((Chain("split"),), ("c9",))).chains) == 3


def test_errno_of_library_messages():
    assert errno_of("Error: Could not process rule: No such file or directory\n") == 2
    assert errno_of("Error: syntax error") == 0


def test_connected_networks_skip_loopback_link_local_and_tunnels():
    import socket

    from netcfg.leak.lan import connected

    rows = [(1, socket.AF_INET, "127.0.0.1", 8), (1, socket.AF_INET6, "::1", 128),
            (2, socket.AF_INET, "192.0.2.2", 24), (2, socket.AF_INET6, "2001:db8:ff::2", 64),
            (2, socket.AF_INET6, "fe80::1", 64), (3, socket.AF_INET, "192.0.2.9", 24),
            (7, socket.AF_INET, "10.8.0.2", 24)]
    assert [str(n) for n in connected(rows, skip={7})] == ["192.0.2.0/24", "2001:db8:ff::/64"]
