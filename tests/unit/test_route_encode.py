"""Route.encode against pyroute2's own request pipeline.

The oracle is the code path `AsyncIPRoute.route(...)` uses (argument
processor + NetlinkRequest + rtmsg encoder), run without a socket.  Both
messages are decoded with pyroute2's `rtmsg` and compared field by field.
Two documented differences are normalised, not compared: the port id
(pyroute2 fills in its pid, we leave 0 for the kernel) and `rtm_table` for
tables above 255 (pyroute2 puts 254 there, we put RT_TABLE_UNSPEC like
iproute2; the kernel takes RTA_TABLE in both cases).
"""

from __future__ import annotations

import ipaddress
import socket
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st
from pyroute2.iproute.linux import get_arguments_processor, get_dump_filter
from pyroute2.netlink.nlsocket import NetlinkRequest
from pyroute2.netlink.rtnl import RTM_DELROUTE, RTM_NEWROUTE
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netcfg.kernel.route import RT_SCOPE_LINK, RT_SCOPE_NOWHERE, RT_SCOPE_UNIVERSE, RT_TABLE_UNSPEC, Route

_COMMANDS = {"add": (RTM_NEWROUTE, "create"), "del": (RTM_DELROUTE, "req")}
# NetlinkRequest reads these from its socket; with msg_seq given, nothing else.
_NO_SOCKET = SimpleNamespace(addr_pool=None, status={"nlm_echo": False, "strict_check": False}, epid=0, marshal=None)


def pyroute2_encode(route: Route, op: str, seq: int) -> bytes:
    """What pyroute2 sends for the same route, with our proto/scope/type."""
    if op == "del":
        scope = RT_SCOPE_NOWHERE
    elif route.gateway or route.family == socket.AF_INET6:
        scope = RT_SCOPE_UNIVERSE
    else:
        scope = RT_SCOPE_LINK
    query = dict(
        family=route.family, dst=f"{route.dst}/{route.prefix}", oif=route.oif,
        table=route.table, proto=route.proto, scope=scope, type="unicast",
    )  # fmt: skip
    if route.gateway:
        query["gateway"] = route.gateway
    if route.metric is not None:
        query["priority"] = route.metric
    params = {"strict_check": False}
    _, query = get_dump_filter("route", op, query, params)
    args = get_arguments_processor("route", op, query, params)
    request = NetlinkRequest(_NO_SOCKET, rtmsg(), op, _COMMANDS, None, args, msg_seq=seq, msg_pid=0)
    request.msg.encode()
    return bytes(request.msg.data)


def decoded(data: bytes) -> dict:
    msg = rtmsg(data)
    msg.decode()
    header = {k: msg["header"][k] for k in ("length", "type", "flags", "sequence_number")}
    fields = {k: msg[k] for k in ("family", "dst_len", "src_len", "tos", "proto", "scope", "type", "flags")}
    attrs = sorted((name, value) for name, value in msg["attrs"])
    table = dict(attrs)["RTA_TABLE"]
    return {"header": header, "fields": fields, "attrs": attrs, "table": table, "rtm_table": msg["table"]}


def _network(draw, family: int) -> tuple[str, int]:
    bits = 32 if family == socket.AF_INET else 128
    prefix = draw(st.integers(0, bits))
    value = draw(st.integers(0, 2**bits - 1)) >> (bits - prefix) << (bits - prefix) if prefix else 0
    address = ipaddress.IPv4Address(value) if bits == 32 else ipaddress.IPv6Address(value)
    return str(address), prefix


@st.composite
def routes(draw) -> Route:
    family = draw(st.sampled_from([socket.AF_INET, socket.AF_INET6]))
    dst, prefix = _network(draw, family)
    if family == socket.AF_INET:
        gateway = draw(st.none() | st.ip_addresses(v=4).map(str))
    else:
        gateway = draw(st.none() | st.ip_addresses(v=6).map(str))
    return Route(
        family=family, dst=dst, prefix=prefix, oif=draw(st.integers(1, 2**31 - 1)), gateway=gateway,
        # pyroute2 rewrites an IPv6 metric of 0 to 1024 (what the kernel
        # stores); we send values as given, so leave 0 out for IPv6.
        metric=draw(st.none() | st.integers(0 if family == socket.AF_INET else 1, 2**32 - 1)),
        table=draw(st.sampled_from([254, 255, 253, 1]) | st.integers(1, 2**32 - 1)),
        proto=draw(st.sampled_from([111, 4]) | st.integers(0, 255)),
    )  # fmt: skip


@given(routes(), st.sampled_from(["add", "del"]), st.integers(0, 2**32 - 1))
def test_encode_matches_pyroute2(route: Route, op: str, seq: int) -> None:
    ours, theirs = decoded(route.encode(op, seq)), decoded(pyroute2_encode(route, op, seq))
    assert ours["header"] == theirs["header"]
    assert ours["fields"] == theirs["fields"]
    assert ours["attrs"] == theirs["attrs"]
    assert ours["table"] == route.table
    assert ours["rtm_table"] == (route.table if route.table < 256 else RT_TABLE_UNSPEC)


def test_encode_known_bytes() -> None:
    """One message spelled out, so a layout change shows up as a readable diff."""
    route = Route(socket.AF_INET, "10.1.2.3", 32, 5, metric=100)
    assert route.encode("add", 1).hex(" ", 4).split() == [
        "3c000000", "18000506", "01000000", "00000000",  # nlmsghdr: len 60, NEWROUTE, REQ|ACK|EXCL|CREATE, seq 1
        "02200000", "fe6ffd01", "00000000",  # rtmsg: inet /32, main, proto 111, scope link, unicast
        "08000100", "0a010203",  # RTA_DST
        "08000400", "05000000",  # RTA_OIF
        "08000600", "64000000",  # RTA_PRIORITY
        "08000f00", "fe000000",  # RTA_TABLE
    ]  # fmt: skip


def test_default_route_has_no_dst_and_delete_matches_any_scope() -> None:
    route = Route(socket.AF_INET6, "::", 0, 7, gateway="fe80::1")
    msg = decoded(route.encode("del", 9))
    assert "RTA_DST" not in dict(msg["attrs"])
    assert msg["header"]["type"] == RTM_DELROUTE and msg["header"]["flags"] == 0x5
    assert msg["fields"]["scope"] == RT_SCOPE_NOWHERE
