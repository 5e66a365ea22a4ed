"""hypothesis strategies for leak-protection policies (netcfg.leak.rules.LeakRules)."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from netcfg.leak.rules import LeakRules


def _nets(version: int, shortest: int) -> st.SearchStrategy:
    longest = 32 if version == 4 else 128
    return st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False),
                     st.ip_addresses(v=version), st.integers(shortest, longest))


def networks(shortest: int = 0) -> st.SearchStrategy:
    """IPv4 networks with prefixes of at least `shortest`, IPv6 ones of at least twice that."""
    return st.one_of(_nets(4, shortest), _nets(6, min(shortest * 2, 128)))


def policies(tunnels: int = 40, lan: int = 60, shortest: int = 0) -> st.SearchStrategy:
    return st.builds(
        LeakRules,
        tunnels=st.frozensets(st.integers(1, 2**31 - 1), max_size=tunnels),
        marks=st.frozensets(st.integers(1, 2**32 - 1), max_size=4),
        uplinks=st.frozensets(st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True), max_size=4),
        allow_lan=st.booleans(),
        lan=st.lists(networks(shortest), max_size=lan).map(tuple),
    )
