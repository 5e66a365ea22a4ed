"""systemd-resolved backend against the REAL systemd-resolved (resolved_env.py).

netcfg's DnsManager + ResolvedBackend run in tests/dns/runner.py inside
resolved's namespace, talking to it over the namespace's system bus through
netcfg.bus.resolver_calls, as the service does.  Every check looks at
resolved itself: `resolvectl` for the link settings, and a lookup through
the stub at 127.0.0.53 to see which DNS server actually answered.
"""

from __future__ import annotations

import time

import pytest

SERVER_ADDED, SERVER_REMOVED, SEARCH_ADDED, SEARCH_REMOVED = 128, 256, 512, 1024
NOTHING = {"dns": "", "domain": "", "default-route": "no", "dnssec": "no", "dnsovertls": "no"}


@pytest.fixture
def env(resolved_env):
    yield resolved_env
    if resolved_env.resolved is None:
        resolved_env.start_resolved()
    resolved_env.ns.sh("rm -f /run/netcfg-test/state/*")
    resolved_env.revert_all()


@pytest.fixture
def runner(env):
    r = env.runner()
    yield r
    r.close()


def device(runner, id_, servers=(), domains=(), **kw):
    runner.ok("new", id=id_)
    runner.ok("set", id=id_, servers=list(servers), domains=list(domains), **kw)


def wait_for(check, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def test_global_scope_sends_every_name_to_the_vpn_server(env, runner):
    assert env.who_answers("www.example.org") == "system"
    device(runner, "a", ["10.8.0.1"], ["vpn.example"])
    changes = runner.ok("enable", id="a", device="vpn0")["changes"]
    assert changes == [[SERVER_ADDED, "vpn0", {"dns_server": "10.8.0.1"}],
                       [SEARCH_ADDED, "vpn0", {"search_domain": "vpn.example"}]]
    link = env.link("vpn0")
    assert (link["dns"], link["domain"], link["default-route"]) == ("10.8.0.1", "vpn.example ~.", "yes")
    assert env.who_answers("www.example.org") == "vpn0"
    assert env.who_answers("host.vpn.example") == "vpn0"

    removed = runner.ok("remove", id="a")["changes"]
    assert removed == [[SERVER_REMOVED, "vpn0", {"dns_server": "10.8.0.1"}],
                       [SEARCH_REMOVED, "vpn0", {"search_domain": "vpn.example"}]]
    assert env.link("vpn0") == NOTHING  # RevertLink
    assert env.who_answers("www.example.org") == "system"
    assert env.who_answers("host.vpn.example") == "system"


def test_tunnel_scope_sends_only_the_pushed_domains(env, runner):
    device(runner, "a", ["10.8.0.1"], ["vpn.example", "corp.example"], scope="tunnel")
    runner.ok("enable", id="a", device="vpn0")
    link = env.link("vpn0")
    assert (link["domain"], link["default-route"]) == ("vpn.example corp.example", "no")
    assert env.who_answers("host.vpn.example") == "vpn0"
    assert env.who_answers("deep.host.corp.example") == "vpn0"
    assert env.who_answers("www.example.org") == "system"
    runner.ok("disable", id="a")
    assert env.link("vpn0") == NOTHING
    assert env.who_answers("host.vpn.example") == "system"


def test_ipv6_servers_in_any_text_form(env, runner):
    device(runner, "a", ["FD00:0008:0000::0001", "::1", "2001:db8::", "::ffff:10.8.0.1"])
    changes = runner.ok("enable", id="a", device="vpn0")["changes"]
    # Events carry the canonical compressed form (RFC 5952; the original
    # printed eight zero-padded groups and aborted on some of these).
    assert [c[2]["dns_server"] for c in changes] == ["fd00:8::1", "::1", "2001:db8::", "::ffff:10.8.0.1"]
    # The IPv4-mapped server is handed to resolved as the IPv4 server it is.
    assert env.link("vpn0")["dns"] == "fd00:8::1 ::1 2001:db8:: 10.8.0.1"
    assert env.who_answers("www.example.org") == "vpn0-v6"  # first server, over IPv6 through vpn0


def test_dnssec_and_dns_over_tls_modes(env, runner):
    device(runner, "a", ["10.8.0.1"], dnssec="optional", transport="dot")
    runner.ok("enable", id="a", device="vpn0")
    link = env.link("vpn0")
    assert link["dnssec"] == "allow-downgrade"
    assert link["dnsovertls"] in ("yes", "opportunistic")  # opportunistic: a resolved built without TLS
    runner.ok("remove", id="a")
    device(runner, "b", ["10.8.0.1"], dnssec="no", transport="plain")
    runner.ok("enable", id="b", device="vpn0")
    assert (env.link("vpn0")["dnssec"], env.link("vpn0")["dnsovertls"]) == ("no", "no")


def test_every_device_is_applied_and_each_removed_once(env, runner):
    device(runner, "old", ["10.8.0.1"], ["old.example"], scope="tunnel")
    device(runner, "new", ["10.9.0.1"], ["new.example"], scope="tunnel")
    runner.ok("enable", id="old", device="vpn0")
    runner.ok("enable", id="new", device="vpn1")
    assert env.link("vpn0")["dns"] == "10.8.0.1" and env.link("vpn1")["dns"] == "10.9.0.1"
    assert env.who_answers("a.old.example") == "vpn0"
    assert env.who_answers("a.new.example") == "vpn1"
    assert runner.ok("aggregate") == {"ok": True, "servers": ["10.8.0.1", "10.9.0.1"],
                                      "domains": ["old.example", "new.example"]}
    # The newer one goes while the older stays: its REMOVED events, once.
    removed = runner.ok("remove", id="new")["changes"]
    assert removed == [[SERVER_REMOVED, "vpn1", {"dns_server": "10.9.0.1"}],
                       [SEARCH_REMOVED, "vpn1", {"search_domain": "new.example"}]]
    assert env.link("vpn1") == NOTHING
    assert env.who_answers("a.new.example") == "system"
    assert env.who_answers("a.old.example") == "vpn0"
    assert runner.ok("aggregate")["servers"] == ["10.8.0.1"]
    assert [c[0] for c in runner.ok("remove", id="old")["changes"]] == [SERVER_REMOVED, SEARCH_REMOVED]
    assert runner.ok("aggregate") == {"ok": True, "servers": [], "domains": []}


def test_second_establish_moves_the_settings_to_the_new_link(env, runner):
    device(runner, "a", ["10.8.0.1"], ["vpn.example"], scope="tunnel")
    runner.ok("enable", id="a", device="vpn0")
    runner.ok("enable", id="a", device="vpn1")
    assert env.link("vpn0") == NOTHING
    assert env.link("vpn1")["domain"] == "vpn.example"


def test_refusal_by_resolved_fails_and_leaves_nothing(env, runner):
    device(runner, "a", ["10.8.0.1"], ["vpn.example"])
    reply = runner.call("enable", id="a", device="lo")
    assert not reply["ok"] and reply["error"] == "BusCallError"
    assert "SetLinkDNS on lo (#1)" in reply["text"] and "loopback" in reply["text"]
    assert runner.ok("settings", id="a")["enabled"] is False
    assert env.who_answers("www.example.org") == "system"

    reply = runner.call("enable", id="a", device="nosuch0")
    assert not reply["ok"] and "no network interface 'nosuch0'" in reply["text"]
    # The same device works once given a usable link.
    runner.ok("enable", id="a", device="vpn0")
    assert env.who_answers("www.example.org") == "vpn0"


def test_missing_at_start_then_used_when_it_appears(env):
    env.stop_resolved()
    r = env.runner()
    try:
        assert r.started["backend"] == "systemd-resolved"
        r.wait_log("systemd-resolved (org.freedesktop.resolve1) is not on the bus (the bus can start it on demand)")
        device(r, "a", ["10.8.0.1"])
        reply = r.call("enable", id="a", device="vpn0")
        assert not reply["ok"] and reply["error"] == "BusCallError"
        assert "SetLinkDNS on vpn0" in reply["text"] and "org.freedesktop.DBus.Error" in reply["text"]
        env.start_resolved()
        r.wait_log("systemd-resolved is on the bus")
        r.ok("enable", id="a", device="vpn0")
        assert env.who_answers("www.example.org") == "vpn0"
    finally:
        r.close()


def test_restarted_resolved_gets_the_settings_again(env, runner):
    device(runner, "a", ["10.8.0.1"], ["vpn.example"])
    runner.ok("enable", id="a", device="vpn0")
    env.stop_resolved()
    runner.wait_log("systemd-resolved left the bus")
    env.start_resolved(forget_links=True)  # it comes back knowing nothing of vpn0
    runner.wait_log("systemd-resolved is on the bus: applying the DNS settings of 1 devices")
    wait_for(lambda: env.link("vpn0")["dns"] == "10.8.0.1", "settings re-applied")
    assert env.link("vpn0")["domain"] == "vpn.example ~."
    assert env.who_answers("www.example.org") == "vpn0"


def test_links_left_by_a_killed_run_are_reverted_at_start(env):
    r = env.runner()
    device(r, "a", ["10.8.0.1"], ["vpn.example"])
    r.ok("enable", id="a", device="vpn0")
    r.kill()
    r.close()
    assert env.who_answers("www.example.org") == "vpn0"  # still configured after the crash
    r2 = env.runner()
    try:
        r2.wait_log("resolved: reverted vpn0")
        assert env.link("vpn0") == NOTHING
        assert env.who_answers("www.example.org") == "system"
    finally:
        r2.close()


def test_shutdown_reverts_every_link(env, runner):
    device(runner, "a", ["10.8.0.1"])
    device(runner, "b", ["10.9.0.1"])
    runner.ok("enable", id="a", device="vpn0")
    runner.ok("enable", id="b", device="vpn1")
    runner.ok("stop")
    assert env.link("vpn0") == NOTHING and env.link("vpn1") == NOTHING


def test_auto_picks_resolved_when_it_is_on_the_bus(env):
    r = env.runner(backend="auto")
    try:
        assert r.started["backend"] == "systemd-resolved"
        r.wait_log("DNS backend systemd-resolved (auto: org.freedesktop.resolve1 is on the bus)")
    finally:
        r.close()
    env.stop_resolved()
    r = env.runner(backend="auto")
    try:
        assert r.started["backend"] == "systemd-resolved"
        r.wait_log("(auto: org.freedesktop.resolve1 can be started and /etc/resolv.conf points at it)")
    finally:
        r.close()
