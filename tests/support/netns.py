"""Throw-away network namespaces for the tests.

``Netns.create()`` makes ``nctest-<random>`` with ``lo`` up; ``delete()``
removes it (and its router namespace), killing processes left inside.
Queries go through ``ip -j`` and return parsed JSON; ``snapshot()`` reduces
links, addresses, routes and rules to stable, comparable tuples (no
counters, lifetimes, "tentative" flags) and ``diff_snapshots()`` /
``assert_no_leaks()`` compare two of them.

``add_uplink()`` gives the namespace a veth "uplink0" to a second "router"
namespace ``<name>-r`` (interface "down0")::

    client  uplink0  192.0.2.2/24  2001:db8:ff::2/64   default via router
    router  down0    192.0.2.1/24  2001:db8:ff::1/64

IPv6 duplicate address detection is off in both namespaces, so every
address (link-local ones too) is usable at once.
"""

from __future__ import annotations

import json
import secrets
import signal
import os
import subprocess
from typing import Any, Iterable, Sequence

PREFIX = "nctest"

UPLINK_IF = "uplink0"
ROUTER_IF = "down0"
CLIENT_V4 = "192.0.2.2"
ROUTER_V4 = "192.0.2.1"
CLIENT_V6 = "2001:db8:ff::2"
ROUTER_V6 = "2001:db8:ff::1"

# Route protocol number the service tags its routes with (openvpn3-linux
# uses RTPROT 111); ``ip -j`` prints it as the string "111".
NETCFG_RTPROTO = "111"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise subprocess.CalledProcessError(
            r.returncode, ["ip", *args], r.stdout, r.stderr
        )
    return r


def _json(text: str) -> list[dict[str, Any]]:
    text = text.strip()
    return json.loads(text) if text else []


class Netns:
    def __init__(self, name: str) -> None:
        self.name = name
        self.router: Netns | None = None
        self.uplink: str | None = None

    # -- life cycle ----------------------------------------------------
    @classmethod
    def create(cls, prefix: str = PREFIX, name: str | None = None) -> "Netns":
        ns = cls(name or f"{prefix}-{secrets.token_hex(4)}")
        _ip("netns", "add", ns.name)
        try:
            ns.ip("link", "set", "lo", "up")
            # IPv6 addresses usable at once: no DAD on links made later.
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")
        except Exception:
            ns.delete()
            raise
        return ns

    def exists(self) -> bool:
        return os.path.exists(f"/run/netns/{self.name}")

    def pids(self) -> list[int]:
        r = _ip("netns", "pids", self.name, check=False)
        return [int(p) for p in r.stdout.split()]

    def delete(self) -> None:
        """Delete the namespace (and the router namespace).  Processes still
        inside are SIGKILLed first: a test's leftovers would keep the
        namespace and its links alive."""
        if self.router is not None:
            self.router.delete()
            self.router = None
        if not self.exists():
            return
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _ip("netns", "del", self.name, check=False)

    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc) -> None:
        self.delete()

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    # -- commands ------------------------------------------------------
    def argv(self, cmd: Sequence[str]) -> list[str]:
        """The argv running ``cmd`` in the namespace (ip netns exec execs,
        so a Popen of it has the pid of ``cmd`` itself)."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(
        self, cmd: Sequence[str], check: bool = True, **kw
    ) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        r = subprocess.run(self.argv(cmd), **kw)
        if check and r.returncode != 0:
            raise subprocess.CalledProcessError(
                r.returncode, self.argv(cmd), r.stdout, r.stderr
            )
        return r

    def popen(self, cmd: Sequence[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(cmd), **kw)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``ip -n NAME args...``"""
        return _ip("-n", self.name, *args, check=check)

    def ip_json(self, *args: str) -> list[dict[str, Any]]:
        """``ip -n NAME -j args...``, parsed."""
        return _json(_ip("-n", self.name, "-j", *args).stdout)

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    # -- queries -------------------------------------------------------
    def links(self) -> list[dict[str, Any]]:
        """``ip -d -j link``: with ``linkinfo.info_kind`` (tun, veth...)."""
        return self.ip_json("-d", "link", "show")

    def link(self, ifname: str) -> dict[str, Any] | None:
        for link in self.links():
            if link["ifname"] == ifname:
                return link
        return None

    def link_names(self) -> list[str]:
        return [link["ifname"] for link in self.links()]

    def addresses(self, ifname: str | None = None) -> list[dict[str, Any]]:
        """Flat list of addresses: each ``addr_info`` entry plus ``ifname``."""
        args = ["addr", "show"] + (["dev", ifname] if ifname else [])
        out = []
        for link in self.ip_json(*args):
            for a in link.get("addr_info", []):
                out.append({"ifname": link["ifname"], **a})
        return out

    def routes(self, family: int = 4, table: str = "all") -> list[dict[str, Any]]:
        """Routes of ``family`` (4 or 6) in ``table`` ("all", "main", a
        number...).  Each has ``family`` and ``table`` set ("main" when ip
        leaves it out)."""
        out = self.ip_json(f"-{family}", "route", "show", "table", str(table))
        for r in out:
            r.setdefault("table", "main" if table == "all" else str(table))
            r["family"] = family
        return out

    def all_routes(self, table: str = "all") -> list[dict[str, Any]]:
        return self.routes(4, table) + self.routes(6, table)

    def rules(self, family: int = 4) -> list[dict[str, Any]]:
        out = self.ip_json(f"-{family}", "rule", "show")
        for r in out:
            r["family"] = family
        return out

    def netcfg_routes(self) -> list[dict[str, Any]]:
        """Routes tagged with the service's protocol (111), any table."""
        return [
            r for r in self.all_routes() if str(r.get("protocol")) == NETCFG_RTPROTO
        ]

    def snapshot(self) -> dict[str, list[tuple]]:
        return snapshot(self)

    # -- uplink --------------------------------------------------------
    def add_uplink(self) -> "Netns":
        """veth uplink0 <-> down0 in a router namespace; see module doc.
        Returns the router namespace."""
        if self.router is not None:
            return self.router
        router = Netns.create(name=f"{self.name}-r")
        self.router = router
        self.ip(
            "link", "add", UPLINK_IF, "type", "veth",
            "peer", "name", ROUTER_IF, "netns", router.name,
        )
        self.uplink = UPLINK_IF
        router.ip("addr", "add", f"{ROUTER_V4}/24", "dev", ROUTER_IF)
        router.ip("addr", "add", f"{ROUTER_V6}/64", "dev", ROUTER_IF, "nodad")
        router.ip("link", "set", ROUTER_IF, "up")
        self.ip("addr", "add", f"{CLIENT_V4}/24", "dev", UPLINK_IF)
        self.ip("addr", "add", f"{CLIENT_V6}/64", "dev", UPLINK_IF, "nodad")
        self.ip("link", "set", UPLINK_IF, "up")
        self.ip("-4", "route", "add", "default", "via", ROUTER_V4, "dev", UPLINK_IF)
        self.ip("-6", "route", "add", "default", "via", ROUTER_V6, "dev", UPLINK_IF)
        return router


# -- snapshots ---------------------------------------------------------
def _t(d: dict[str, Any], keys: Iterable[str]) -> tuple:
    return tuple((k, _freeze(d[k])) for k in keys if k in d)


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


_ROUTE_KEYS = (
    "family", "table", "type", "dst", "gateway", "via", "dev", "protocol",
    "scope", "metric", "prefsrc", "nexthops", "mtu", "src",
)
_ADDR_KEYS = ("ifname", "family", "local", "address", "prefixlen", "scope")
# Kernel-maintained or time-dependent rule fields left out of comparisons.
_RULE_SKIP = {"flags"}


def snapshot(ns: Netns) -> dict[str, list[tuple]]:
    """Links, addresses, routes (v4+v6, all tables) and rules (v4+v6) as
    sorted tuples of the fields that matter.  Link "UP" is kept, carrier
    (LOWER_UP) is not: it follows UP asynchronously."""
    links = []
    for link in ns.links():
        kind = link.get("linkinfo", {}).get("info_kind")
        up = "UP" in link.get("flags", [])
        links.append(
            (("ifname", link["ifname"]), ("kind", kind), ("mtu", link.get("mtu")),
             ("up", up))
        )
    addrs = [_t(a, _ADDR_KEYS) for a in ns.addresses()]
    routes = [_t(r, _ROUTE_KEYS) for r in ns.all_routes()]
    rules = [
        _t(r, sorted(k for k in r if k not in _RULE_SKIP))
        for r in ns.rules(4) + ns.rules(6)
    ]
    return {
        "links": sorted(links, key=repr),
        "addrs": sorted(addrs, key=repr),
        "routes": sorted(routes, key=repr),
        "rules": sorted(rules, key=repr),
    }


def diff_snapshots(
    before: dict[str, list[tuple]], after: dict[str, list[tuple]]
) -> dict[str, dict[str, list[tuple]]]:
    """``{category: {"added": [...], "removed": [...]}}`` for the categories
    that differ; empty when equal."""
    out = {}
    for cat in sorted(set(before) | set(after)):
        b, a = set(before.get(cat, ())), set(after.get(cat, ()))
        added, removed = sorted(a - b, key=repr), sorted(b - a, key=repr)
        if added or removed:
            out[cat] = {"added": added, "removed": removed}
    return out


def format_diff(diff: dict[str, dict[str, list[tuple]]]) -> str:
    lines = []
    for cat, d in diff.items():
        for sign, key in (("+", "added"), ("-", "removed")):
            for item in d[key]:
                lines.append(f"{cat} {sign} {dict(item)}")
    return "\n".join(lines)


def assert_no_leaks(
    before: dict[str, list[tuple]], after: dict[str, list[tuple]]
) -> None:
    d = diff_snapshots(before, after)
    assert not d, "network state changed:\n" + format_diff(d)
