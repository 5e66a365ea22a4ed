"""Establish on a real bus into the real kernel (issue 3): the happy path
with a real tun fd, redirect-gateway and exclude routes, all-or-nothing
rollback, and Establish again after Disable or on an established device.

The service runs as root in the test's namespace; the happy path's client
runs as the ``openvpn`` user (client runner), the others use the test's own
root connection, which receives the tun fds itself.
"""

from __future__ import annotations

import os

import pytest

from support import NETCFG_MANAGER_PATH
from support.client import arun_client
from support.lifecycle import (
    ADDR4, ADDR6, NETCFG_ERROR, NETWORKS, UNKNOWN_OBJECT, V6_DEFAULT_METRIC, Netcfg,
    assert_ok, child_nodes, configure_steps, dev_step, expected_routes, fds_to, get_step,
    global_addresses, ipv4_udp_packet, log_problems, mgr_step, route_set, rx_packets, steal_fd, tun_links,
    tun_name, wait_until,
)
from support.netns import CLIENT_V4, ROUTER_V4, ROUTER_V6, UPLINK_IF

pytestmark = pytest.mark.asyncio

STD_ADDRESSES = {("10.8.0.2", 24), ("fd00:8::2", 64)}


def assert_configured(netns, ifname: str, *, mtu: int, txqlen: int | None = None, extra_routes=()) -> None:
    """The kernel holds exactly the standard configuration on ``ifname``."""
    link = netns.link(ifname)
    assert link is not None, f"{ifname} missing: {netns.link_names()}"
    assert link["linkinfo"]["info_kind"] == "tun"
    assert "UP" in link["flags"], link["flags"]
    assert link["mtu"] == mtu
    if txqlen is not None:
        assert link["txqlen"] == txqlen
    assert {(a, p) for _, a, p in global_addresses(netns, ifname)} == STD_ADDRESSES
    assert route_set(netns) == expected_routes(ifname) | set(extra_routes)


def assert_clean(netns) -> None:
    assert tun_links(netns) == []
    assert {a for a in global_addresses(netns) if a[0] != UPLINK_IF} == set()
    assert route_set(netns) == set()


async def test_happy_path_as_openvpn(service, netns, root_bus, users):
    """CreateVirtualInterface ... Establish as the openvpn user: an empty reply
    with one tun fd; the kernel holds exactly what was asked; a packet written
    into the fd is counted by the kernel; Destroy cleans everything."""
    nc = Netcfg(root_bus)
    steps = [mgr_step("CreateVirtualInterface", "s", ["happy"])]
    dev = {"ref": [0, 0]}
    steps += configure_steps(dev, mtu=1420, txqueuelen=700)
    steps += [dev_step(dev, "Establish"), get_step(dev, "device_name"), get_step(dev, "owner")]
    client = await arun_client(service.bus_address, steps, user=users.openvpn.name, hold=True)
    tun_fd = None
    try:
        res = client.results
        assert_ok(res)
        path = res[0]["body"][0]
        assert path == f"{NETCFG_MANAGER_PATH}/{client.pid}_happy"
        est = res[-3]
        assert est["body"] == [] and est["signature"] == ""
        assert est["fds"] == 1 and est["fd_targets"] == ["/dev/net/tun"]
        ifname = res[-2]["body"][0]["variant"][1]
        assert res[-1]["body"][0] == {"variant": ["u", users.openvpn.uid]}

        # The client's fd is the tun device netcfg configured.
        [client_fd] = fds_to(client.pid, "/dev/net/tun")
        tun_fd = steal_fd(client.pid, client_fd)
        assert tun_name(tun_fd) == ifname
        assert ifname.startswith("tun") and await nc.get(path, "device_name") == ifname

        assert_configured(netns, ifname, mtu=1420, txqlen=700)
        assert {r[0] for r in route_set(netns)} == {f"{n[0]}/{n[1]}" for n in NETWORKS}

        # A packet from the VPN side: the kernel receives it on the tun.
        before = rx_packets(netns, ifname)
        packet = ipv4_udp_packet(ADDR4[2], ADDR4[0])
        assert os.write(tun_fd, packet) == len(packet)
        await wait_until(lambda: rx_packets(netns, ifname) > before, what="rx_packets to increase")

        assert path.rsplit("/", 1)[1] in child_nodes(await nc.introspect())
        await nc.destroy(path)  # root may; the client's fd is still open
        assert_clean(netns)
        assert (await nc.error(path, "Destroy")).name == UNKNOWN_OBJECT
        assert (await nc.error(path, "Get", "ss", ["net.openvpn.v3.netcfg", "mtu"],
                               interface="org.freedesktop.DBus.Properties")).name == UNKNOWN_OBJECT
        assert child_nodes(await nc.introspect()) == []
        assert await nc.device_paths() == []
        assert log_problems(service) == []
    finally:
        if tun_fd is not None:
            os.close(tun_fd)
        await client.kill()


async def test_full_flow_in_one_openvpn_client(service, netns, users):
    """The same client creates, establishes and destroys; its later calls
    on the destroyed object get UnknownObject."""
    dev = {"ref": [0, 0]}
    steps = [mgr_step("CreateVirtualInterface", "s", ["oneclient"])] + configure_steps(dev)
    steps += [dev_step(dev, "Establish"), dev_step(dev, "Destroy"),
              dev_step(dev, "AddDNS", "as", [["10.8.0.1"]]), mgr_step("FetchInterfaceList")]
    res = await arun_client(service.bus_address, steps, user=users.openvpn.name)
    assert_ok(res[:-2])
    assert res[-4]["fds"] == 1
    assert res[-2]["error"] == UNKNOWN_OBJECT
    assert res[-1]["body"] == [[]]
    assert_clean(netns)


@pytest.mark.netns(uplink=True)
async def test_redirect_gateway_and_exclude_routes(service, netns, root_bus):
    nc = Netcfg(root_bus)
    path = await nc.create("redirect")
    excludes = [["203.0.113.0", 24, -1, False, True], ["198.51.100.0", 24, 30, False, True],
                ["2001:db8:77::", 48, -1, True, True]]
    await nc.configure(path, networks=NETWORKS + excludes, reroute_ipv4=True, reroute_ipv6=True)
    fd = await nc.establish(path)
    try:
        ifname = tun_name(fd)
        def1 = {("0.0.0.0/1", ADDR4[2], ifname, 0), ("128.0.0.0/1", ADDR4[2], ifname, 0),
                ("::/1", ADDR6[2], ifname, V6_DEFAULT_METRIC), ("8000::/1", ADDR6[2], ifname, V6_DEFAULT_METRIC)}
        via_uplink = {("203.0.113.0/24", ROUTER_V4, UPLINK_IF, 0), ("198.51.100.0/24", ROUTER_V4, UPLINK_IF, 30),
                      ("2001:db8:77::/48", ROUTER_V6, UPLINK_IF, V6_DEFAULT_METRIC)}
        assert_configured(netns, ifname, mtu=1420, extra_routes=def1 | via_uplink)
        # The admin's default routes are untouched (def1 beats them, replaces nothing).
        defaults = {(r["family"], r.get("gateway")) for r in netns.all_routes("main") if r["dst"] == "default"}
        assert defaults == {(4, ROUTER_V4), (6, ROUTER_V6)}
        await nc.destroy(path)
        assert_clean(netns)
        assert {a["local"] for a in netns.addresses(UPLINK_IF)} >= {CLIENT_V4}
        assert log_problems(service) == []
    finally:
        os.close(fd)


async def test_exclude_routes_without_uplink_fail_and_roll_back(service, netns, root_bus):
    nc = Netcfg(root_bus)
    path = await nc.create("nouplink")
    await nc.configure(path, networks=NETWORKS + [["203.0.113.0", 24, -1, False, True]], reroute_ipv4=True)
    err = await nc.error(path, "Establish")
    assert err.name == NETCFG_ERROR
    assert "uplink" in err.text and "IPv4" in err.text, err.text
    assert_clean(netns)
    assert netns.link_names() == ["lo"]
    assert log_problems(service) == [], "the rollback met errors"
    # The device is still there and can be established once there is an uplink.
    netns.add_uplink()
    fd = await nc.establish(path)
    try:
        ifname = tun_name(fd)
        assert ("203.0.113.0/24", ROUTER_V4, UPLINK_IF, 0) in route_set(netns)
        assert ("0.0.0.0/1", ADDR4[2], ifname, 0) in route_set(netns)
        await nc.destroy(path)
        assert_clean(netns)
    finally:
        os.close(fd)


REFUSALS = {
    # a gateway off the tunnel's subnet: the kernel refuses the tunnel's routes half-way
    "ipv4": ((["10.8.0.2", 24, "10.9.0.1", False], ADDR6), "192.168.100.0/24", "Network is unreachable"),
    "ipv6": ((ADDR4, ["fd00:8::2", 64, "fd00:9::1", True]), "fd00:100::/48", "No route to host"),
}


@pytest.mark.parametrize("family", sorted(REFUSALS))
async def test_establish_rolls_back_on_kernel_refusal(service, netns, root_bus, family):
    """A route the kernel refuses half-way (its gateway is not on the
    tunnel's subnet): the error names it and the kernel's reason, nothing
    of ours is left, and Establish works once the address is right."""
    addresses, dst, reason = REFUSALS[family]
    nc = Netcfg(root_bus)
    path = await nc.create(f"refused_{family}")
    await nc.configure(path, addresses=addresses, reroute_ipv4=True, reroute_ipv6=True)
    err = await nc.error(path, "Establish")
    assert err.name == NETCFG_ERROR
    assert dst in err.text and reason in err.text, err.text
    assert_clean(netns)
    assert log_problems(service) == [], "the rollback met errors"
    assert await nc.get(path, "device_name") == f"refused_{family}"
    await nc.destroy(path)

    path = await nc.create(f"fixed_{family}")
    await nc.configure(path, reroute_ipv4=True, reroute_ipv6=True)
    fd = await nc.establish(path)
    try:
        ifname = tun_name(fd)
        assert route_set(netns) >= expected_routes(ifname)
        await nc.destroy(path)
        assert_clean(netns)
    finally:
        os.close(fd)


CONFLICTS = {
    # an admin's route with the kernel key of one of ours: EEXIST (NLM_F_EXCL) at first
    "ipv4": (["-4", "route", "add", "172.16.0.0/12", "dev", "lo", "metric", "50"], "172.16.0.0/12", 50),
    "ipv6": (["-6", "route", "add", "fd00:100::/48", "dev", "lo", "metric", str(V6_DEFAULT_METRIC)],
             "fd00:100::/48", V6_DEFAULT_METRIC),
}


@pytest.mark.parametrize("family", sorted(CONFLICTS))
async def test_route_taken_by_the_admin_goes_in_behind_it(service, netns, root_bus, family):
    """The admin has a route with the key of one of ours (same destination
    and metric): Establish succeeds, ours goes in at the next metric, the
    admin's keeps the traffic and is untouched, and Destroy removes only
    ours (the first owner of a destination wins: docs/architecture.md)."""
    add, dst, metric = CONFLICTS[family]
    netns.ip(*add)
    fam = 4 if family == "ipv4" else 6
    admin = [r for r in netns.routes(fam, "main") if r["dst"] == dst]
    assert len(admin) == 1
    nc = Netcfg(root_bus)
    path = await nc.create(f"conflict_{family}")
    await nc.configure(path, reroute_ipv4=True, reroute_ipv6=True)
    fd = await nc.establish(path)
    try:
        ifname = tun_name(fd)
        ours = {(d, gw, dev, m + 1 if d == dst else m) for d, gw, dev, m in expected_routes(ifname)}
        assert route_set(netns) >= ours
        assert [r for r in netns.routes(fam, "main") if r["dst"] == dst and r.get("dev") == "lo"] == admin
        assert "share their key with existing ones" in service.log_text()
        await nc.destroy(path)
        assert_clean(netns)
        assert [r for r in netns.routes(fam, "main") if r["dst"] == dst] == admin
    finally:
        os.close(fd)
    netns.ip(add[0], "route", "del", *add[3:])


async def test_disable_then_establish_again(service, netns, root_bus):
    """Disable keeps the object and removes routes and addresses; Establish
    afterwards gives a new tun with everything back."""
    nc = Netcfg(root_bus)
    path = await nc.create("disable")
    await nc.configure(path)
    fd1 = await nc.establish(path)
    fds = [fd1]
    try:
        tun1 = tun_name(fd1)
        index1 = netns.link(tun1)["ifindex"]
        assert_configured(netns, tun1, mtu=1420)
        await nc.call(path, "Disable")
        assert route_set(netns) == set()
        assert global_addresses(netns) == set()
        assert path in await nc.device_paths()
        old = netns.link(tun1)  # kept, down (docs/architecture.md)
        assert old is not None and "UP" not in old["flags"], old

        fd2 = await nc.establish(path)
        fds.append(fd2)
        tun2 = tun_name(fd2)
        assert await nc.get(path, "device_name") == tun2
        assert_configured(netns, tun2, mtu=1420)
        # A new tun; the disabled one is gone although its fd is still open.
        assert [(l["ifname"], l["ifindex"] != index1) for l in tun_links(netns)] == [(tun2, True)]

        await nc.call(path, "Disable")
        await nc.call(path, "Disable")  # twice is harmless
        await nc.destroy(path)
        assert_clean(netns)
        assert log_problems(service) == []
    finally:
        for fd in fds:
            os.close(fd)
    assert not list(service.state_dir.glob("ledger-*")), "journal entries left"


async def test_establish_on_established_device_replaces_it(service, netns, root_bus):
    nc = Netcfg(root_bus)
    path = await nc.create("again")
    await nc.configure(path)
    fd1 = await nc.establish(path)
    fds = [fd1]
    try:
        tun1 = tun_name(fd1)
        index1 = netns.link(tun1)["ifindex"]
        assert_configured(netns, tun1, mtu=1420)
        await nc.set(path, "mtu", "q", 1300)
        await nc.call(path, "AddNetworks", "a(suibb)", [[["10.99.0.0", 16, 5, False, False]]])
        fd2 = await nc.establish(path)
        fds.append(fd2)
        tun2 = tun_name(fd2)
        # A new tun; the old one is gone although its fd is still open.
        assert [(l["ifname"], l["ifindex"] != index1) for l in tun_links(netns)] == [(tun2, True)]
        assert_configured(netns, tun2, mtu=1300, extra_routes={("10.99.0.0/16", ADDR4[2], tun2, 5)})
        assert await nc.get(path, "device_name") == tun2
        await nc.destroy(path)
        assert_clean(netns)
        assert log_problems(service) == []
    finally:
        for fd in fds:
            os.close(fd)
    assert not list(service.state_dir.glob("ledger-*")), "journal entries left"


async def test_establish_needs_layer_and_leaves_nothing(service, netns, root_bus):
    nc = Netcfg(root_bus)
    path = await nc.create("nolayer")
    await nc.call(path, "AddIPAddress", "susb", ADDR4)
    err = await nc.error(path, "Establish")
    assert err.name == NETCFG_ERROR and "layer" in err.text
    assert_clean(netns)
    await nc.destroy(path)
