"""DCO through netcfg into the real kernel module, ovpn-dco-v2 or mainline
ovpn, whichever the guest's kernel has (runs in the VM: scripts/dco-tests.sh,
once per kernel; the ``dco_family`` fixture is that family's codec).  A
client-side device made with EnableDCO, NewPeer, NewKey, SetPeer and
Establish carries ping traffic to a far end set up without netcfg in the
router namespace, speaking the same family, so the keys, the peer and the
socket reached the kernel as the kernel understands them; a peer the kernel
expires reaches the client's pipe; bad calls get errors and leave nothing;
every way a device ends deletes its link.
"""

from __future__ import annotations

import os
import signal
import socket
import struct

import pytest
from dbus_fast.aio import MessageBus

from support import NETCFG_MANAGER_PATH
from support.client import arun_client
from support.lifecycle import dev_step, mgr_step, wait_until
from support.netns import CLIENT_V4, ROUTER_V4
from support.protection import CallFailed, Netcfg
from support.dbuscalls import ACCESS_DENIED, NETCFG_ERROR, UNKNOWN_OBJECT

from dcolib import PEER_ID, FarEnd, in_netns, key_config, sockaddr_b64, udp_socket_in

pytestmark = [pytest.mark.asyncio, pytest.mark.netns(uplink=True)]
IFNAME = "dcotest0"


def link_kind(netns, ifname: str) -> str | None:
    link = netns.link(ifname)
    return link.get("linkinfo", {}).get("info_kind") if link else None


async def dco_device(nc: Netcfg, name: str = "dco", ifname: str = IFNAME) -> tuple[str, str]:
    path = (await nc.call(NETCFG_MANAGER_PATH, "CreateVirtualInterface", "s", [name])).body[0]
    dco = (await nc.call(path, "EnableDCO", "s", [ifname])).body[0]
    return path, dco


async def new_peer(nc: Netcfg, dco: str, netns, tcp: bool = False) -> socket.socket:
    sock = udp_socket_in(netns.name, CLIENT_V4, ROUTER_V4, tcp=tcp)
    await nc.call(dco, "NewPeer", "ususs", [PEER_ID, sockaddr_b64(ROUTER_V4), 16, "0.0.0.0", "::"], fds=[sock.fileno()])
    return sock


async def test_a_dco_tunnel_carries_traffic(service, netns, root_bus, dco_family):
    nc = Netcfg(root_bus)
    assert (await nc.call(NETCFG_MANAGER_PATH, "DcoAvailable")).body == [True], f"no {dco_family.name} in this kernel"
    path, dco = await dco_device(nc)
    assert dco == path + "/dco"
    assert link_kind(netns, IFNAME) == dco_family.link_kind
    assert await nc.get(path, "device_name") == IFNAME
    assert set((await nc.call(NETCFG_MANAGER_PATH, "FetchInterfaceList")).body[0]) == {path, dco}
    xml = (await nc.call(dco, "Introspect", interface="org.freedesktop.DBus.Introspectable")).body[0]
    for member in ("NewPeer", "GetPipeFD", "NewKey", "SwapKeys", "SetPeer"):
        assert f'<method name="{member}"' in xml

    pipe = (await nc.call(dco, "GetPipeFD")).unix_fds[0]
    key = key_config()
    far = await FarEnd.start(netns.router, dco_family, "dcofar0", ROUTER_V4, CLIENT_V4, "10.8.0.2/24", key)
    sock = await new_peer(nc, dco, netns)
    try:
        await nc.call(dco, "NewKey", "us", [0, key])
        await nc.call(dco, "SetPeer", "uuu", [PEER_ID, 10, 60])
        await nc.set(path, "layer", "u", 3)
        await nc.call(path, "AddIPAddress", "susb", ["10.8.0.1", 24, "10.8.0.2", False])
        await nc.call(path, "SetRemoteAddress", "sb", [ROUTER_V4, False])
        await nc.call(path, "AddNetworks", "a(suibb)", [[("10.9.0.0", 24, -1, False, False)]])
        reply = await nc.call(path, "Establish")
        assert reply.body == [] and not reply.unix_fds  # a DCO device has no tun fd
        link = netns.link(IFNAME)
        assert "UP" in link["flags"] and link["mtu"] == 1500
        assert any(r.get("dst") == "10.9.0.0/24" and r.get("dev") == IFNAME for r in netns.routes())

        # The data channel: encrypted by one kernel, decrypted by the other.
        ping = netns.run(["ping", "-c", "3", "-i", "0.3", "-W", "5", "10.8.0.2"], check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr

        # Rekeying: a key into the secondary slot, swapped in and back (the far
        # end has only key 0, so traffic flows again only with it primary).
        await nc.call(dco, "NewKey", "us", [1, key_config(key_id=1)])
        await nc.call(dco, "SwapKeys", "u", [PEER_ID])
        await nc.call(dco, "SwapKeys", "u", [PEER_ID])
        ping = netns.run(["ping", "-c", "2", "-i", "0.3", "-W", "5", "10.8.0.2"], check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr

        await nc.call(path, "Destroy")
        assert netns.link(IFNAME) is None
        with pytest.raises(CallFailed) as err:
            await nc.call(dco, "SwapKeys", "u", [PEER_ID])
        assert err.value.name == UNKNOWN_OBJECT
        assert (await nc.call(NETCFG_MANAGER_PATH, "FetchInterfaceList")).body[0] == []
    finally:
        sock.close()
        os.close(pipe)
        await far.stop()


async def test_a_tcp_transport_carries_traffic(service, netns, root_bus, dco_family):
    """NewPeer with a connected TCP socket: the peer is its other end (the
    mainline kernel refuses a remote address with a TCP socket; netcfg sends
    none there), and the data channel runs framed over the stream."""
    nc = Netcfg(root_bus)
    path, dco = await dco_device(nc)
    key = key_config()
    far = await FarEnd.start(netns.router, dco_family, "dcofar0", ROUTER_V4, CLIENT_V4, "10.8.0.2/24", key,
                             transport="tcp")
    sock = None
    try:
        sock = await new_peer(nc, dco, netns, tcp=True)
        await far.wait_ready()  # it accepted our connection and added its peer
        await nc.call(dco, "NewKey", "us", [0, key])
        await nc.call(dco, "SetPeer", "uuu", [PEER_ID, 10, 60])
        await nc.set(path, "layer", "u", 3)
        await nc.call(path, "AddIPAddress", "susb", ["10.8.0.1", 24, "10.8.0.2", False])
        await nc.call(path, "SetRemoteAddress", "sb", [ROUTER_V4, False])
        await nc.call(path, "Establish")
        ping = netns.run(["ping", "-c", "3", "-i", "0.3", "-W", "5", "10.8.0.2"], check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        await nc.call(path, "Destroy")
        assert netns.link(IFNAME) is None
    finally:
        if sock is not None:
            sock.close()
        await far.stop()


async def test_an_expired_peer_is_written_to_the_pipe(service, netns, root_bus, dco_family):
    """Keepalive timeout with nobody answering: the kernel deletes the peer
    (reason EXPIRED) and the client reads [the family's peer-deleted command
    (3 ovpn-dco-v2, 5 ovpn), u32 peer id, 2] from its pipe."""
    nc = Netcfg(root_bus)
    path, dco = await dco_device(nc)
    pipe = socket.socket(fileno=(await nc.call(dco, "GetPipeFD")).unix_fds[0])
    sock = await new_peer(nc, dco, netns)
    try:
        assert pipe.type == socket.SOCK_DGRAM
        await nc.call(dco, "NewKey", "us", [0, key_config()])
        await nc.call(dco, "SetPeer", "uuu", [PEER_ID, 1, 2])
        pipe.settimeout(30)
        assert pipe.recv(64) == bytes([dco_family.peer_deleted_cmd]) + struct.pack("=I", PEER_ID) + bytes([2])
        with pytest.raises(CallFailed) as err:  # the peer is gone
            await nc.call(dco, "SetPeer", "uuu", [PEER_ID, 10, 60])
        assert err.value.name == NETCFG_ERROR and "No such file or directory" in err.value.text
        await nc.call(path, "Destroy")
    finally:
        sock.close()
        pipe.close()


async def test_bad_calls_are_refused_and_change_nothing(service, netns, root_bus, dco_family):
    nc = Netcfg(root_bus)
    path = (await nc.call(NETCFG_MANAGER_PATH, "CreateVirtualInterface", "s", ["bad"])).body[0]
    for name, text in (("lo", "File exists"), ("a/b", "not a valid interface name"),
                       ("x" * 16, "not a valid interface name"), ("", "not a valid interface name")):
        with pytest.raises(CallFailed) as err:
            await nc.call(path, "EnableDCO", "s", [name])
        assert err.value.name == NETCFG_ERROR and text in err.value.text, (name, err.value.text)
    assert netns.link("lo") is not None  # EEXIST: someone else's link is never deleted
    assert (await nc.call(NETCFG_MANAGER_PATH, "FetchInterfaceList")).body[0] == [path]

    dco = (await nc.call(path, "EnableDCO", "s", [IFNAME])).body[0]
    r, w = os.pipe()
    cases = [
        ("EnableDCO", path, "s", ["dcotest1"], (), "enabled already"),
        ("NewPeer", dco, "ususs", [PEER_ID, sockaddr_b64(ROUTER_V4), 16, "", ""], (), "no transport socket"),
        ("NewPeer", dco, "ususs", [PEER_ID, sockaddr_b64(ROUTER_V4), 16, "", ""], (r,), "not a socket"),
        ("NewPeer", dco, "ususs", [PEER_ID, sockaddr_b64(ROUTER_V4), 28, "", ""], (), "Sockaddr size mismatching"),
        ("NewPeer", dco, "ususs", [PEER_ID, "!!", 16, "", ""], (), "not valid base64"),
        ("NewKey", dco, "us", [0, "AAAA"], (), "Failed to parse DCO key configuration"),
        ("NewKey", dco, "us", [3, key_config()], (), "key_slot 3 is invalid"),
        ("NewKey", dco, "us", [0, key_config()], (), "No such file or directory"),  # no peer yet: the kernel says
        ("SetPeer", dco, "uuu", [7, 10, 60], (), "No such file or directory"),
        ("SetPeer", dco, "uuu", [PEER_ID, 10, 100000], (), "over 86400"),
        ("SwapKeys", dco, "u", [0x1000000], (), "out of range"),
    ]
    try:
        for member, obj, sig, body, fds, text in cases:
            with pytest.raises(CallFailed) as err:
                await nc.call(obj, member, sig, body, fds=fds)
            assert err.value.name == NETCFG_ERROR and text in err.value.text, (member, body, err.value.text)
        fd = (await nc.call(dco, "GetPipeFD")).unix_fds[0]
        os.close(fd)
        with pytest.raises(CallFailed) as err:
            await nc.call(dco, "GetPipeFD")
        assert "handed out already" in err.value.text
    finally:
        os.close(r)
        os.close(w)
    assert link_kind(netns, IFNAME) == dco_family.link_kind
    await nc.call(path, "Destroy")
    assert netns.link(IFNAME) is None


def journaled_links(svc) -> list:
    """The links the service's journal lists now (read only: the service is running)."""
    import json

    from netcfg.kernel.link import TunLink
    from netcfg.state import decode_all

    found = []
    for path in svc.state_dir.glob("ledger-*.json"):
        found += [o for o in decode_all(json.loads(path.read_text())["objects"]) if isinstance(o, TunLink)]
    return found


async def test_a_dco_link_is_deleted_only_by_its_index_name_and_kind(service, netns, root_bus, dco_family):
    """The DCO link is journaled with the kernel's ifindex as soon as it is
    known (it used to stay at 0, deleted by name and kind alone).  An admin
    deletes it and makes another link of the same name and kind: Destroy
    leaves that one alone."""
    from pyroute2 import IPRoute

    from netcfg.kernel.link import TunLink

    nc = Netcfg(root_bus)
    path, _ = await dco_device(nc)
    index = netns.link(IFNAME)["ifindex"]
    assert journaled_links(service) == [TunLink(index, IFNAME, dco_family.link_kind)]

    netns.ip("link", "del", IFNAME)

    def admins_link() -> None:
        with IPRoute() as ipr:
            ipr.link("add", ifname=IFNAME, kind=dco_family.link_kind)

    in_netns(netns.name, admins_link)
    other = netns.link(IFNAME)["ifindex"]
    assert other != index
    await nc.call(path, "Destroy")
    assert netns.link(IFNAME)["ifindex"] == other, "the admin's link was deleted"
    netns.ip("link", "del", IFNAME)


async def test_only_the_owner_drives_the_data_channel(service, netns, root_bus, users):
    """The original lets anyone the bus admits load keys (Authorize: true);
    here the device's rule holds: its creating process or root."""
    nc = Netcfg(root_bus)
    path, dco = await dco_device(nc)
    steps = [dev_step(dco, "SwapKeys", "u", [PEER_ID]), dev_step(dco, "NewKey", "us", [0, key_config()]),
             dev_step(dco, "GetPipeFD")]
    results = await arun_client(service.bus_address, steps, user=users.openvpn.name)
    assert [r.get("error") for r in results] == [ACCESS_DENIED] * 3, results
    await nc.call(path, "Destroy")


async def test_every_ending_deletes_the_link(service_factory, netns, bus, users, dco_family):
    """The client leaving the bus, and the service killed and started again."""
    svc = await service_factory()
    steps = [mgr_step("CreateVirtualInterface", "s", ["gone"]), dev_step({"ref": [0, 0]}, "EnableDCO", "s", [IFNAME])]
    results = await arun_client(svc.bus_address, steps, user=users.openvpn.name)
    assert all(r.get("ok") for r in results), results
    await wait_until(lambda: netns.link(IFNAME) is None, 15)

    conn = await MessageBus(bus_address=svc.bus_address, negotiate_unix_fd=True).connect()
    try:
        await dco_device(Netcfg(conn), "crash")
        assert link_kind(netns, IFNAME) == dco_family.link_kind
        svc.signal(signal.SIGKILL)
        await svc.wait(10)
    finally:
        conn.disconnect()
    assert link_kind(netns, IFNAME) == dco_family.link_kind  # nobody is left to delete it...
    await service_factory(extra_args=["--state-dir", str(svc.state_dir)])  # ...until the next start
    assert netns.link(IFNAME) is None  # recovery runs before the name is owned


async def test_events_of_a_dco_device_and_its_link_deleted_by_an_admin(service, netns, root_bus, bus, users, dco_family):
    """Establish, Disable and Establish again announce the DCO link like a tun
    (spec 8 order); `ip link del` by an admin is reported with origin
    external, and Destroy afterwards neither fails nor reports it again."""
    from support.subscriber import Subscriber

    sub = await Subscriber.start(bus.address, users.openvpn.name, mask=2047)
    nc = Netcfg(root_bus)
    path, dco = await dco_device(nc)
    await nc.set(path, "layer", "u", 3)
    await nc.call(path, "AddIPAddress", "susb", ["10.8.0.1", 24, "10.8.0.2", False])
    await nc.call(path, "AddNetworks", "a(suibb)", [[("10.9.0.0", 24, -1, False, False)]])
    await nc.call(path, "SetRemoteAddress", "sb", [ROUTER_V4, False])
    ours, ext = {"origin": "netcfg"}, {"origin": "external"}
    addr = {"ip_address": "10.8.0.1", "prefix": "24", "prefix_size": "24", "ip_version": "4"}
    net = {"ip_version": "4", "subnet": "10.9.0.0", "prefix": "24", "prefix_size": "24"}
    up = [[1, IFNAME, ours], [4, IFNAME, {**addr, **ours}], [16, IFNAME, {**net, "gateway": "10.8.0.2", **ours}]]
    down = [[32, IFNAME, {**net, **ours}], [8, IFNAME, {**addr, **ours}], [2, IFNAME, ours]]
    try:
        await nc.call(path, "Establish")
        assert await sub.wait_changes(3) == up
        await nc.call(path, "Disable")
        assert (await sub.wait_changes(6))[3:] == down
        assert link_kind(netns, IFNAME) == dco_family.link_kind and "UP" not in netns.link(IFNAME)["flags"]
        await nc.call(path, "Establish")
        assert (await sub.wait_changes(9))[6:] == up
        netns.ip("link", "del", IFNAME)
        gone = [[32, IFNAME, {**net, **ext}], [8, IFNAME, {**addr, **ext}], [2, IFNAME, ext]]
        assert (await sub.wait_changes(12, timeout=30))[9:] == gone
        await nc.call(path, "Destroy")
        await sub.settle(1.0)
        assert len(sub.changes()) == 12
        assert "teardown incomplete" not in service.log_text()
    finally:
        await sub.close()
