"""Introspection XML: what the real v27 client matches byte for byte."""

import re
import xml.etree.ElementTree as ET

from netcfg.bus.dco import DcoFace
from netcfg.bus.device import DeviceFace
from netcfg.bus.manager import ManagerFace
from netcfg.bus.members import Method, Policy, introspect


def test_parent_node_lists_netcfg_exactly():
    xml = introspect(None, (), (), (), ["netcfg"])
    # openvpn3-linux src/dbus/support-functions.cpp matches this regex
    assert re.search(r'<node name="netcfg"/>', xml)
    # and retries while the reply is 218 characters or shorter (spec 1.7)
    assert len(xml) > 218
    ET.fromstring(xml.split("\n", 2)[2])


def test_manager_and_device_members():
    xml = introspect("net.openvpn.v3.netcfg", ManagerFace.methods.values(), ManagerFace.properties.values(),
                     ManagerFace.signals, ["123_x"])
    root = ET.fromstring(xml.split("\n", 2)[2])
    iface = root.find("interface[@name='net.openvpn.v3.netcfg']")
    methods = [m.get("name") for m in iface.findall("method")]
    assert methods == ["CreateVirtualInterface", "FetchInterfaceList", "ProtectSocket", "DcoAvailable", "Cleanup",
                       "NotificationSubscribe", "NotificationUnsubscribe", "NotificationSubscriberList"]
    protect = iface.find("method[@name='ProtectSocket']")
    assert [(a.get("name"), a.get("type"), a.get("direction")) for a in protect.findall("arg")] == [
        ("remote", "s", "in"), ("ipv6", "b", "in"), ("device_path", "o", "in"), ("succeeded", "b", "out")]
    assert '<node name="123_x"/>' in xml


def test_device_property_types():
    types = {p.name: p.type for p in DeviceFace.properties.values()}
    assert types["mtu"] == "q" and types["txqueuelen"] == "q" and types["layer"] == "u"
    assert types["dns_name_servers"] == "as" and types["dns_search_domains"] == "as"
    writable = {p.name for p in DeviceFace.properties.values() if p.setter}
    assert writable == {"mtu", "layer", "txqueuelen", "reroute_ipv4", "reroute_ipv6", "dns_scope"}
    assert DeviceFace.methods["AddNetworks"].signature == "a(suibb)"


def test_dco_members_in_the_original_order():
    xml = introspect("net.openvpn.v3.netcfg", DcoFace.methods.values(), (), DcoFace.signals, [])
    iface = ET.fromstring(xml.split("\n", 2)[2]).find("interface[@name='net.openvpn.v3.netcfg']")
    assert [m.get("name") for m in iface.findall("method")] == ["NewPeer", "GetPipeFD", "NewKey", "SwapKeys", "SetPeer"]
    new_peer = iface.find("method[@name='NewPeer']")
    assert [(a.get("name"), a.get("type")) for a in new_peer.findall("arg")] == [
        ("peer_id", "u"), ("sa", "s"), ("salen", "u"), ("vpn4", "s"), ("vpn6", "s")]
    assert '<method name="GetPipeFD"/>' in xml  # the fd travels outside the signature
    assert [s.get("name") for s in iface.findall("signal")] == ["Log", "NetworkChange"]
    assert iface.findall("property") == []


def test_the_access_policy_of_every_member():
    """The authorization matrix, pinned: which members the bus policy file
    decides, which are for the device's owner or root, which for root only."""
    for face in (ManagerFace, DeviceFace, DcoFace):
        for m in face.methods.values():
            assert callable(getattr(face, m.name)), m.name
        for p in face.properties.values():
            assert (p.setter is None) == (p.write is None), p.name
    policies = {}
    for face in (ManagerFace, DeviceFace, DcoFace):
        for m in face.methods.values():
            policies.setdefault(m.policy, set()).add(f"{face.__name__}.{m.name}")
    assert policies[Policy.ROOT_ONLY] == {"ManagerFace.NotificationSubscriberList"}
    assert policies[Policy.OWNER_OR_ROOT] == {f"DeviceFace.{m}" for m in DeviceFace.methods} | {
        f"DcoFace.{m}" for m in DcoFace.methods}
    assert policies[Policy.BUS_POLICY] == {f"ManagerFace.{m}" for m in ManagerFace.methods} - {
        "ManagerFace.NotificationSubscriberList"}
    writes = {(face.__name__, p.name): p.write for face in (ManagerFace, DeviceFace) for p in face.properties.values()
              if p.write is not None}
    assert writes == {("ManagerFace", "log_level"): Policy.BUS_POLICY,
                      **{("DeviceFace", n): Policy.OWNER_OR_ROOT
                         for n in ("mtu", "layer", "txqueuelen", "reroute_ipv4", "reroute_ipv6", "dns_scope")}}


def test_method_without_args_is_bare():
    assert '<method name="Cleanup"/>' in introspect("i", [Method("Cleanup", Policy.BUS_POLICY)], (), (), [])
