"""Validators of wire values: every bad value is refused with its name."""

import ipaddress

import pytest
from hypothesis import given, strategies as st

from netcfg.dns.settings import MAX_SERVERS, ResolverSettings, canonical_domain, canonical_server
from netcfg.errors import InvalidArgument
from netcfg.kernel.address import TunnelAddress
from netcfg.kernel.route import Network
from netcfg.registry import sanitise_name


@given(st.ip_addresses(v=4), st.integers(0, 32))
def test_ipv4_address_roundtrip(ip, prefix):
    a = TunnelAddress.from_wire(str(ip), prefix, "", False)
    assert (a.address, a.prefix, a.gateway, a.ipv6) == (str(ip), prefix, "", False)


@given(st.ip_addresses(v=6), st.integers(0, 128))
def test_ipv6_address_canonical(ip, prefix):
    a = TunnelAddress.from_wire(ip.exploded, prefix, "", True)
    assert a.address == str(ip)  # compressed canonical form


@pytest.mark.parametrize("args, needle", [
    (("10.0.0.256", 24, "", False), "10.0.0.256"),
    (("10.0.0.1", 33, "", False), "prefix size 33"),
    (("fd00::1", 129, "", True), "prefix size 129"),
    (("fd00::1", 64, "", False), "ipv6=false"),
    (("10.0.0.1", 24, "", True), "ipv6=true"),
    (("10.0.0.1", 24, "bogus", False), "gateway"),
    (("10.0.0.1", 24, "fd00::1", False), "gateway"),
    (("", 24, "", False), "ip_address"),
    (("1" * 1000, 24, "", False), "too long"),
])
def test_bad_addresses(args, needle):
    with pytest.raises(InvalidArgument, match=needle):
        TunnelAddress.from_wire(*args)


@given(st.ip_addresses(v=4), st.integers(0, 32), st.integers(-1, 2**31 - 1), st.booleans())
def test_networks_canonical_or_refused(ip, prefix, metric, exclude):
    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    if net.network_address == ip:
        n = Network.from_wire(str(ip), prefix, metric, False, exclude)
        assert n.metric == (metric if metric > 0 else None)
    else:
        with pytest.raises(InvalidArgument, match="not canonical"):
            Network.from_wire(str(ip), prefix, metric, False, exclude)


def test_control_characters_in_names():
    assert sanitise_name("abc\n") == "abc"
    assert sanitise_name("a\x01b\x7fc\u00e9") == "ab\x7fc"


@given(st.text(max_size=80))
def test_servers_either_ip_or_refused(text):
    try:
        canonical = canonical_server(text)
    except InvalidArgument as e:
        assert "DNS server" in str(e)
    else:
        assert ipaddress.ip_address(canonical) == ipaddress.ip_address(text.strip())


def test_server_forms():
    assert canonical_server("2001:db8:0:0::1") == "2001:db8::1"
    assert ipaddress.ip_address(canonical_server("::ffff:192.0.2.1")) == ipaddress.ip_address("::ffff:192.0.2.1")


def test_domains():
    assert canonical_domain("example.com.") == "example.com"
    for bad in ("", "a..b", "-a.com", "x" * 64 + ".com", "a b", "a\x00b"):
        with pytest.raises(InvalidArgument):
            canonical_domain(bad)


def test_huge_dns_lists_refused_before_parsing():
    s = ResolverSettings(1)
    with pytest.raises(InvalidArgument, match="too many DNS servers"):
        s.add_servers(["bogus"] * 100_000)
    s.add_servers([f"10.0.0.{i}" for i in range(MAX_SERVERS)])
    with pytest.raises(InvalidArgument, match="too many"):
        s.add_servers(["10.1.0.1"])
    assert len(s.servers) == MAX_SERVERS
