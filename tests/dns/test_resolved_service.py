"""End to end: the netcfg service, a client with a real tun, and the real systemd-resolved.

Everything runs in resolved's namespace (resolved_env.py): the service on
the namespace's system bus with `--dns-backend systemd-resolved`, and a
client (vpnclient.py) that creates a device with DNS settings, calls
Establish, keeps the tun fd and answers the DNS queries resolved sends
through the tun (resolved binds per-link DNS sockets to the link, so the
"VPN DNS server" is whoever holds the tun).  The client answers
198.51.100.9; the system's server answers 198.51.100.1.

These run here rather than with the shared `service` fixture because the
service must share resolved's network and mount namespaces and its bus.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from support.dbuscalls import NETCFG_ERROR

TUN_ANSWER = "198.51.100.9"
SYSTEM_ANSWER = "198.51.100.1"


@pytest.fixture
def netcfg(resolved_env):
    svc = resolved_env.service()
    yield svc
    if resolved_env.resolved is None:
        resolved_env.start_resolved()
    if svc.proc.poll() is None:
        assert svc.stop() == 0, svc.log()
    assert "Traceback" not in svc.log(), svc.log()


def links(env) -> list[str]:
    return [line.split(":")[1].strip().split("@")[0]
            for line in env.ns.run("ip", "-o", "link", "show").stdout.splitlines()]


def wait_for(check, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def resolved_dns(env, ifname) -> str | None:
    try:
        return env.link(ifname)["dns"]
    except AssertionError:  # resolvectl: no such link
        return None


def test_global_scope_then_destroy(resolved_env, netcfg):
    env = resolved_env
    client = env.vpn_client(["10.8.0.1"], ["vpn.example"])
    try:
        assert client.result["ok"], client.result
        tun = client.result["device"]
        link = env.link(tun)
        assert (link["dns"], link["domain"], link["default-route"]) == ("10.8.0.1", "vpn.example ~.", "yes")
        assert env.query("www.example.org") == TUN_ANSWER
        assert env.query("host.vpn.example") == TUN_ANSWER
        assert client.request("destroy") == {"ok": True}
        assert resolved_dns(env, tun) in ("", None)  # RevertLink before the tun went down
        assert env.query("www.example.org") == SYSTEM_ANSWER
    finally:
        client.kill()


def test_tunnel_scope_then_client_killed(resolved_env, netcfg):
    env = resolved_env
    client = env.vpn_client(["10.8.0.1"], ["vpn.example"], scope="tunnel")
    assert client.result["ok"], client.result
    tun = client.result["device"]
    assert env.link(tun)["default-route"] == "no"
    assert env.query("host.vpn.example") == TUN_ANSWER
    assert env.query("www.example.org") == SYSTEM_ANSWER
    client.kill()  # SIGKILL: the tun goes with its fd, the service sees the client leave
    wait_for(lambda: "Client process with bus name" in netcfg.log(), "service noticed the client leaving")
    wait_for(lambda: tun not in links(env), "tun gone")
    assert env.query("host.vpn.example") == SYSTEM_ANSWER


def test_establish_fails_while_resolved_is_away_and_works_once_it_is_back(resolved_env, netcfg):
    env = resolved_env
    env.stop_resolved()
    client = env.vpn_client(["10.8.0.1"], ["vpn.example"])
    try:
        assert client.result["ok"] is False
        assert client.result["error"] == NETCFG_ERROR
        assert "DNS (systemd-resolved): SetLinkDNS on tun" in client.result["text"]
        assert not [name for name in links(env) if name.startswith("tun")]  # rolled back
    finally:
        client.kill()
    env.start_resolved()
    wait_for(lambda: "systemd-resolved is on the bus" in netcfg.log(), "service saw resolved appear")
    client = env.vpn_client(["10.8.0.1"])
    try:
        assert client.result["ok"], client.result
        assert env.query("www.example.org") == TUN_ANSWER
    finally:
        client.kill()


def test_service_shutdown_reverts_while_the_client_keeps_its_tun(resolved_env, netcfg):
    env = resolved_env
    client = env.vpn_client(["10.8.0.1"])
    try:
        assert client.result["ok"], client.result
        assert env.query("www.example.org") == TUN_ANSWER
        assert netcfg.stop() == 0
        assert env.query("www.example.org") == SYSTEM_ANSWER
    finally:
        client.kill()


def test_service_killed_then_restarted_reverts_the_leftover_link(resolved_env, netcfg):
    env = resolved_env
    client = env.vpn_client(["10.8.0.1"])
    try:
        assert client.result["ok"], client.result
        tun = client.result["device"]
        netcfg.proc.send_signal(signal.SIGKILL)
        netcfg.proc.wait(5)
        env.ns.children.remove(netcfg.proc)
        assert env.query("www.example.org") == TUN_ANSWER  # nobody cleaned up
        again = env.service()
        try:
            # Reverted at start; the journal recovery may then remove the old tun too.
            assert resolved_dns(env, tun) in ("", None)
            assert env.query("www.example.org") == SYSTEM_ANSWER
            assert f"reverted {tun}" in again.log()
        finally:
            assert again.stop() == 0
    finally:
        client.kill()
