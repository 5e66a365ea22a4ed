"""Longest-prefix match over routes outside the tunnels."""

import ipaddress

from netcfg.kernel.uplink import Hop, best_route


def hop(net, gw, oif, metric=0):
    return Hop(ipaddress.ip_network(net), gw, oif, metric)


def test_longest_prefix_then_metric():
    hops = [hop("0.0.0.0/0", "192.0.2.1", 2, 100), hop("0.0.0.0/0", "192.0.2.254", 3, 50),
            hop("198.51.100.0/24", "192.0.2.9", 2), hop("2001:db8::/32", None, 2)]
    assert best_route(hops, "203.0.113.7").gateway == "192.0.2.254"
    assert best_route(hops, "198.51.100.7").gateway == "192.0.2.9"
    assert best_route(hops, "2001:db8::1").oif == 2
    assert best_route(hops, "2001:db9::1") is None
