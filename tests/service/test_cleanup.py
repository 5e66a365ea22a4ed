"""Cleanup when the client goes away (issue 3): a client killed before or
after Establish, Cleanup() from the creator's PID, and a client that sends
Destroy and Cleanup without waiting for the replies and exits at once (as
openvpn3-service-client does, spec 1.7).

Clients run as the ``openvpn`` user through the client runner; the test's
root connection only looks (FetchInterfaceList, Introspect).  Exclude
routes and a ProtectSocket host route go via the uplink: unlike the routes
on the tun, the kernel does not remove those by itself when the tun fd is
closed, so only netcfg's cleanup can make the namespace clean.
"""

from __future__ import annotations

import pytest

from support.client import arun_client
from support.lifecycle import (
    NETCFG_ERROR, NETWORKS, REMOTE, UNKNOWN_OBJECT, Netcfg, assert_ok, child_nodes,
    configure_steps, dev_step, get_step, global_addresses, log_problems, mgr_step, route_set,
    set_step, tun_links, wait_until,
)
from support.netns import ROUTER_V4, UPLINK_IF

pytestmark = pytest.mark.asyncio

EXCLUDE = ["203.0.113.0", 24, -1, False, True]
DISAPPEARED = "disappeared! Cleaning up"


def established_device_steps(name: str, index: int) -> list[dict]:
    """Steps creating device ``name`` (as step ``index``) and establishing it
    with the standard configuration, an exclude route, redirect-gateway and
    a protected socket."""
    dev = {"ref": [index, 0]}
    return ([mgr_step("CreateVirtualInterface", "s", [name])]
            + configure_steps(dev, networks=NETWORKS + [EXCLUDE])
            + [set_step(dev, "reroute_ipv4", "b", True),
               mgr_step("ProtectSocket", "sbo", [REMOTE[0], False, dev], fd="udp4"),
               dev_step(dev, "Establish")])


def held_kernel_state(netns) -> None:
    """What an established device of established_device_steps puts in the kernel."""
    assert len(tun_links(netns)) == 1
    routes = route_set(netns)
    assert (f"{EXCLUDE[0]}/{EXCLUDE[1]}", ROUTER_V4, UPLINK_IF, 0) in routes
    # ip prints host routes without /32; their metric is 1, 2, ... one per caller (docs/protect.md)
    assert (REMOTE[0], ROUTER_V4, UPLINK_IF, 1) in routes
    assert any(r[0] == "0.0.0.0/1" for r in routes)


def kernel_clean(netns) -> bool:
    return (not tun_links(netns) and not route_set(netns)
            and not {a for a in global_addresses(netns) if a[0] != UPLINK_IF})


async def no_devices(nc: Netcfg) -> bool:
    return await nc.device_paths() == [] and child_nodes(await nc.introspect()) == []


async def test_client_killed_before_establish(service, netns, root_bus, users):
    nc = Netcfg(root_bus)
    steps = [mgr_step("CreateVirtualInterface", "s", ["early1"]),
             mgr_step("CreateVirtualInterface", "s", ["early2"])]
    steps += configure_steps({"ref": [0, 0]})
    client = await arun_client(service.bus_address, steps, user=users.openvpn.name, hold=True)
    try:
        assert_ok(client.results)
        assert len(await nc.device_paths()) == 2
    finally:
        assert await client.kill() == -9
    await wait_until(lambda: no_devices(nc), what="the devices to be destroyed")
    assert kernel_clean(netns)
    assert service.log_text().count(DISAPPEARED) == 2
    assert log_problems(service, allow=(DISAPPEARED,)) == []


@pytest.mark.netns(uplink=True)
async def test_client_killed_after_establish(service, netns, root_bus, users):
    nc = Netcfg(root_bus)
    steps = established_device_steps("late", 0)
    steps.append(mgr_step("CreateVirtualInterface", "s", ["late_unused"]))
    client = await arun_client(service.bus_address, steps, user=users.openvpn.name, hold=True)
    try:
        assert_ok(client.results)
        assert client.results[-3]["body"] == [True]  # ProtectSocket
        held_kernel_state(netns)
        assert len(await nc.device_paths()) == 2
    finally:
        assert await client.kill() == -9
    await wait_until(lambda: no_devices(nc), what="the devices to be destroyed")
    await wait_until(lambda: kernel_clean(netns), what="the kernel to be clean")
    assert log_problems(service, allow=(DISAPPEARED,)) == []


MANY_TUNS = 48


async def test_client_with_many_tuns_killed_is_not_taken_for_an_admin(service, netns, root_bus, users):
    """The kernel deletes a killed client's tuns one after another while the
    process exits, each deletion waiting for RCU grace periods: the process
    becomes a zombie (its pidfd readable) long after the first tun's
    RTM_DELLINK.  That tun went with its client all the same: the order
    the kernel guarantees (PF_EXITING before the files close, process.py)
    says so, however long the exit takes, so no device is reported as
    removed by someone else (the old 0.5 s wait for the pidfd did, under
    load: issue 15)."""
    nc = Netcfg(root_bus)
    steps = []
    for i in range(MANY_TUNS):
        dev = {"ref": [len(steps), 0]}
        steps += [mgr_step("CreateVirtualInterface", "s", [f"many{i}"]), set_step(dev, "layer", "u", 3),
                  dev_step(dev, "AddIPAddress", "susb", [f"10.{100 + i}.0.2", 24, f"10.{100 + i}.0.1", False]),
                  dev_step(dev, "Establish")]
    client = await arun_client(service.bus_address, steps, user=users.openvpn.name, hold=True)
    try:
        assert_ok(client.results)
        assert len(tun_links(netns)) == MANY_TUNS
    finally:
        assert await client.kill() == -9
    await wait_until(lambda: no_devices(nc), what="the devices to be destroyed")
    assert kernel_clean(netns)
    assert "removed by someone else" not in service.log_text()
    assert service.log_text().count(DISAPPEARED) == MANY_TUNS
    assert log_problems(service, allow=(DISAPPEARED,)) == []


@pytest.mark.netns(uplink=True)
async def test_cleanup_from_the_creators_pid(service, netns, root_bus, users):
    """Cleanup() removes every device of the calling PID, established or
    not, and its protections, although the client still holds the tun fd."""
    nc = Netcfg(root_bus)
    steps = established_device_steps("cleanme", 0)
    steps += [mgr_step("CreateVirtualInterface", "s", ["cleanme_too"]),
              mgr_step("Cleanup"),
              mgr_step("FetchInterfaceList"),
              get_step({"ref": [0, 0]}, "mtu"),
              dev_step({"ref": [len(steps), 0]}, "Destroy")]
    client = await arun_client(service.bus_address, steps, user=users.openvpn.name, hold=True)
    try:
        res = client.results
        assert_ok(res[:-2])
        assert res[len(steps) - 6]["fds"] == 1  # Establish
        assert res[-3]["body"] == [[]]
        assert res[-2]["error"] == res[-1]["error"] == UNKNOWN_OBJECT
        # netcfg removed it all itself: the client still holds the tun fd.
        assert kernel_clean(netns), (netns.link_names(), route_set(netns))
        assert await no_devices(nc)
        assert "Cleanup() from pid" in service.log_text()
    finally:
        await client.release()
    assert log_problems(service) == []


async def test_cleanup_from_another_process_leaves_devices(service, netns, root_bus, users):
    nc = Netcfg(root_bus)
    owner = await arun_client(service.bus_address, [mgr_step("CreateVirtualInterface", "s", ["mine"])],
                              user=users.openvpn.name, hold=True)
    try:
        path = owner.results[0]["body"][0]
        res = await arun_client(service.bus_address, [mgr_step("Cleanup")], user=users.openvpn.name)
        assert_ok(res)
        assert await nc.device_paths() == [path]
    finally:
        await owner.release()
    await wait_until(lambda: no_devices(nc), what="the device to be destroyed")


@pytest.mark.netns(uplink=True)
async def test_destroy_and_cleanup_without_waiting(service, netns, root_bus, users):
    """Like the real client at disconnect: Destroy and Cleanup sent with
    NO_REPLY_EXPECTED, then the process exits at once."""
    nc = Netcfg(root_bus)
    steps = established_device_steps("quick", 0)
    other = len(steps)
    steps += [mgr_step("CreateVirtualInterface", "s", ["quick_other"]),
              dev_step({"ref": [0, 0]}, "Destroy", no_reply=True),
              mgr_step("Cleanup", no_reply=True)]
    res = await arun_client(service.bus_address, steps, user=users.openvpn.name)
    assert_ok(res)
    await wait_until(lambda: no_devices(nc), what="the devices to be destroyed")
    await wait_until(lambda: kernel_clean(netns), what="the kernel to be clean")
    paths = [res[0]["body"][0], res[other]["body"][0]]
    log = service.log_text()
    # Each went by the call meant for it, not by the disconnect.
    assert f"{paths[0]} removed: Destroy()" in log
    assert f"{paths[1]} removed: Cleanup() from pid" in log
    assert DISAPPEARED not in log
    assert log_problems(service) == []


async def test_failed_establish_then_client_killed(service, netns, root_bus, users):
    """A device whose Establish failed is still cleaned up with its client."""
    nc = Netcfg(root_bus)
    dev = {"ref": [0, 0]}
    steps = ([mgr_step("CreateVirtualInterface", "s", ["failed"])]
             + configure_steps(dev, networks=NETWORKS + [EXCLUDE])  # no uplink: fails
             + [dev_step(dev, "Establish")])
    client = await arun_client(service.bus_address, steps, user=users.openvpn.name, hold=True)
    try:
        assert client.results[-1]["error"] == NETCFG_ERROR
        assert kernel_clean(netns)
        assert len(await nc.device_paths()) == 1
    finally:
        await client.kill()
    await wait_until(lambda: no_devices(nc), what="the device to be destroyed")
    assert kernel_clean(netns)


@pytest.mark.netns(uplink=True)
async def test_client_gone_before_the_establish_reply(service, netns, root_bus, users):
    """Establish sent without waiting, then the client exits: the tun fd has
    nobody to go to, and the device and its routes via the uplink go."""
    nc = Netcfg(root_bus)
    steps = established_device_steps("noreply", 0)
    steps[-1] = {**steps[-1], "no_reply": True}
    res = await arun_client(service.bus_address, steps, user=users.openvpn.name)
    assert_ok(res)
    await wait_until(lambda: no_devices(nc), what="the device to be destroyed")
    await wait_until(lambda: kernel_clean(netns), what="the kernel to be clean")
    assert "established as tun" in service.log_text()
    assert log_problems(service, allow=(DISAPPEARED,)) == []
