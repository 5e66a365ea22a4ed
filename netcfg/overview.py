"""Read-only views of what netcfg holds, for admins (`netcfgctl`, via bus/admin.py).

Everything here is plain values (str, int, bool, None, lists, dicts) and
nothing changes state: devices with their owners, what each asked for,
what its ledger says netcfg put into the kernel, and what the kernel has
now.  `device_detail` puts the two side by side, one row per kernel object,
each row marked:

* ``ok``: in the ledger and in the kernel;
* ``missing``: in the ledger, not in the kernel (removed by someone else,
  not yet noticed: foreign.py forgets such objects as it sees them go);
* ``removed``: asked for by the client, established, but in neither (someone
  removed it and netcfg forgot it; it comes back at the next Establish);
* ``foreign``: on the device's link, not netcfg's (someone else added it);
* ``kernel``: made by the kernel itself (the prefix route of an address,
  the IPv6 link-local address), listed for completeness.

The schema (keys and meanings) is documented in docs/netcfgctl.md.
"""

from __future__ import annotations

import ipaddress
import socket

from .reconcile import RTPROT_KERNEL, notice_key
from .reconcile import observed_key as key_of
from .kernel.address import AddressOnLink
from .kernel.link import TunLink
from .kernel.netlink import Netlink, refused
from .kernel.route import DEF1_V4, DEF1_V6, RTPROT_NETCFG, Route
from .kernel.rule import Rule
from .kernel.watch import AddressNotice, KernelWatch, LinkNotice, RouteNotice
from .process import command_name
from .session import Session, State

IFF_UP = 0x1
DRIFT = ("missing", "removed", "foreign")


def _family(ipv6: bool) -> int:
    return 6 if ipv6 else 4


def route_view(r: Route, names: dict[int, str] | None = None) -> dict:
    return {"kind": "route", "family": _family(r.family == socket.AF_INET6), "dst": r.dst, "prefix": r.prefix,
            "gateway": r.gateway, "oif": r.oif, "dev": (names or {}).get(r.oif), "metric": r.metric,
            "table": r.table, "proto": r.proto}


def _notice_route_view(n: RouteNotice, names: dict[int, str]) -> dict:
    return {"kind": "route", "family": _family(n.ipv6), "dst": n.dst, "prefix": n.prefix, "gateway": n.gateway,
            "oif": n.oif, "dev": names.get(n.oif), "metric": n.metric, "table": n.table, "proto": n.proto}


def rule_view(r: Rule) -> dict:
    return {"kind": "rule", "family": _family(r.family == socket.AF_INET6), "priority": r.priority,
            "fwmark": r.fwmark, "fwmask": r.fwmask, "table": r.table, "proto": r.proto}


def owner_view(owner) -> dict:
    return {"uid": owner.uid, "pid": owner.pid, "process": command_name(owner.pid), "bus_name": owner.bus_name}


def device_ifindex(session: Session) -> int | None:
    if session.link is not None and session.state is not State.DESTROYED:
        return session.link.ifindex
    if session.dco is not None and session.dco.ifindex:
        return session.dco.ifindex
    return None


def device_summary(session: Session) -> dict:
    """One line of `netcfgctl devices`."""
    held = session.held_objects()
    links = [o for o in held if isinstance(o, TunLink)]
    dns = session.dns
    return {
        "path": session.path,
        "name": session.device_name,
        "kind": "dco" if session.dco is not None else "tun",
        "link_kind": links[-1].link_kind if links else ("tun" if session.dco is None else session.dco.link.link_kind),
        "state": session.state.value,
        "owner": owner_view(session.owner),
        "ifindex": device_ifindex(session),
        "addresses": [str(a) for a in session.config.addresses],
        "routes": sum(1 for o in held if isinstance(o, Route)),
        "dns": {"servers": list(dns.servers), "search": list(dns.domains), "scope": dns.scope,
                "dnssec": dns.dnssec},
    }


def _config_view(session: Session) -> dict:
    c = session.config
    return {"mtu": c.mtu, "layer": c.layer, "txqueuelen": c.txqueuelen, "reroute_ipv4": c.reroute_ipv4,
            "reroute_ipv6": c.reroute_ipv6, "remote": c.remote,
            "addresses": [{"address": a.address, "prefix": a.prefix, "gateway": a.gateway, "family": _family(a.ipv6)}
                          for a in c.addresses],
            "networks": [{"address": n.address, "prefix": n.prefix, "metric": n.metric, "family": _family(n.ipv6),
                          "exclude": n.exclude} for n in c.networks]}


async def device_detail(session: Session, watch: KernelWatch, nl: Netlink) -> dict:
    """`netcfgctl show`: the summary, the configuration, the ledger beside the kernel."""
    notices = await watch.dump()
    names = {n.ifindex: n.ifname for n in notices if isinstance(n, LinkNotice)}
    ifindex = device_ifindex(session)
    held = session.held_objects()
    rows = _ledger_rows(held, notices, names)
    rows += _foreign_rows(held, notices, names, ifindex)
    if session.state is State.ESTABLISHED:
        rows += _removed_rows(session, held, names, ifindex)
    detail = device_summary(session)
    detail["config"] = _config_view(session)
    detail["link"] = await _link_view(nl, ifindex, session)
    detail["objects"] = rows
    detail["drift"] = sum(1 for r in rows if r["state"] in DRIFT) + len(detail["link"]["drift"])
    return detail


def _ledger_rows(held: list, notices: list, names: dict[int, str]) -> list[dict]:
    kernel = {notice_key(n): n for n in notices if not isinstance(n, LinkNotice)}
    rows = []
    for obj in held:
        if isinstance(obj, TunLink):
            continue  # the link has a view of its own
        present = kernel.get(key_of(obj))
        if isinstance(obj, Route):
            row = route_view(obj, names)
            if present is not None:  # what the kernel reports (its default metric, ...)
                row["metric"] = present.metric
        else:
            a = obj.address
            row = {"kind": "address", "family": _family(a.ipv6), "address": a.address, "prefix": a.prefix,
                   "ifindex": obj.ifindex, "dev": names.get(obj.ifindex)}
        row.update(ledger=True, kernel=present is not None, state="ok" if present is not None else "missing")
        rows.append(row)
    return rows


def _foreign_rows(held: list, notices: list, names: dict[int, str], ifindex: int | None) -> list[dict]:
    if ifindex is None:
        return []
    ours = {key_of(o) for o in held}
    rows = []
    for n in notices:
        if isinstance(n, RouteNotice) and n.oif == ifindex and notice_key(n) not in ours:
            row = _notice_route_view(n, names)
            made_by_kernel = n.proto == RTPROT_KERNEL or n.table == 255  # prefix, local and multicast routes
            row.update(ledger=False, kernel=True, state="kernel" if made_by_kernel else "foreign")
        elif isinstance(n, AddressNotice) and n.ifindex == ifindex and notice_key(n) not in ours:
            row = {"kind": "address", "family": _family(n.ipv6), "address": n.address, "prefix": n.prefix,
                   "ifindex": n.ifindex, "dev": names.get(n.ifindex), "ledger": False, "kernel": True,
                   "state": "kernel" if ipaddress.ip_address(n.address).is_link_local else "foreign"}
        else:
            continue
        rows.append(row)
    return rows


def _removed_rows(session: Session, held: list, names: dict[int, str], ifindex: int | None) -> list[dict]:
    """What the client asked for that is neither in the ledger nor in the kernel any more."""
    c = session.config
    have_routes = {(o.family == socket.AF_INET6, o.dst, o.prefix) for o in held if isinstance(o, Route)}
    have_addresses = {(o.address.ipv6, o.address.address, o.address.prefix) for o in held
                      if isinstance(o, AddressOnLink)}
    rows = []
    for a in c.addresses:
        if (a.ipv6, a.address, a.prefix) not in have_addresses:
            rows.append({"kind": "address", "family": _family(a.ipv6), "address": a.address, "prefix": a.prefix,
                         "ifindex": ifindex, "dev": names.get(ifindex), "ledger": False, "kernel": False,
                         "state": "removed"})
    wanted = list(c.networks)
    for halves in (DEF1_V4, DEF1_V6):  # the redirect routes, when this Establish made them (one half left)
        if any((n.ipv6, n.address, n.prefix) in have_routes for n in halves):
            wanted += halves
    for n in wanted:
        if (n.ipv6, n.address, n.prefix) not in have_routes:
            rows.append({"kind": "route", "family": _family(n.ipv6), "dst": n.address, "prefix": n.prefix,
                         "gateway": None, "oif": None if n.exclude else ifindex,
                         "dev": None if n.exclude else names.get(ifindex), "metric": n.metric, "table": 254,
                         "proto": RTPROT_NETCFG, "ledger": False, "kernel": False, "state": "removed"})
    return rows


async def _link_view(nl: Netlink, ifindex: int | None, session: Session) -> dict:
    view = {"ifindex": ifindex, "name": None, "kind": None, "mtu": None, "up": None, "kernel": False, "drift": []}
    if ifindex is None:
        return view
    try:
        async with refused("look up", f"link #{ifindex}"):
            msg = (await nl.ipr.link("get", index=ifindex))[0]
    except Exception:
        if session.state is State.ESTABLISHED:
            view["drift"].append("the link is gone from the kernel")
        return view
    view.update(name=msg.get("ifname"), kind=msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")), mtu=msg.get("mtu"),
                up=bool(msg["flags"] & IFF_UP), kernel=True)
    if session.state is State.ESTABLISHED:
        if not view["up"]:
            view["drift"].append("the link is down")
        if view["mtu"] != session.config.mtu:
            view["drift"].append(f"MTU {view['mtu']} in the kernel, {session.config.mtu} asked for")
    return view


def protection_view(prot, names: dict[int, str] | None = None) -> dict:
    """One ProtectSocket caller: its socket's remote and the host route it holds."""
    return {"owner": owner_view(prot.owner), "remote": prot.remote, "family": _family(prot.ipv6),
            "device": prot.device_path, "routes": [route_view(r, names) for r in prot.ledger.objects(Route)]}


def mark_view(mark, names: dict[int, str] | None = None) -> dict | None:
    """The --set-somark rule and table, while a protection holds them."""
    if mark is None:
        return None
    return {"mark": mark.mark, "table": mark.table, "priority": mark.priority, "holders": len(mark.holders),
            "rules": [rule_view(r) for r in mark.ledger.objects(Rule)],
            "routes": [route_view(r, names) for r in mark.ledger.objects(Route)]}


async def link_names(watch: KernelWatch) -> dict[int, str]:
    return {n.ifindex: n.ifname for n in await watch.dump(addresses=False, routes=False)
            if isinstance(n, LinkNotice)}
