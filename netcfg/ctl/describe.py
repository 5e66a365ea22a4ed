"""Text forms shared by the commands: owners, routes, rules, devices."""

from __future__ import annotations

import pwd

from ..events import ChangeType

TABLES = {254: "main", 255: "local", 253: "default"}


def user_name(uid: int | None) -> str | None:
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def with_user(owner: dict) -> dict:
    """The service's owner dict plus `user` (looked up here, where the admin is)."""
    return {**owner, "user": user_name(owner.get("uid"))}


def owner_text(owner: dict) -> str:
    user = owner.get("user") or user_name(owner.get("uid"))
    parts = [f"uid {owner.get('uid')}" + (f" ({user})" if user else "")]
    if owner.get("pid") is not None:
        parts.append(f"pid {owner['pid']}" + (f" ({owner['process']})" if owner.get("process") else ""))
    if owner.get("bus_name"):
        parts.append(owner["bus_name"])
    return ", ".join(parts)


def route_text(r: dict) -> str:
    dst = "default" if r.get("prefix") == 0 else f"{r['dst']}/{r['prefix']}"
    parts = [dst]
    if r.get("gateway"):
        parts.append(f"via {r['gateway']}")
    dev = r.get("dev") or (f"#{r['oif']}" if r.get("oif") else None)
    if dev:
        parts.append(f"dev {dev}")
    if r.get("metric") is not None:
        parts.append(f"metric {r['metric']}")
    table = r.get("table")
    if table is not None and table != 254:
        parts.append(f"table {TABLES.get(table, table)}")
    if r.get("proto") is not None:
        parts.append(f"proto {r['proto']}")
    return " ".join(parts)


def rule_text(r: dict) -> str:
    return (f"IPv{r['family']} {r['priority']}: fwmark {r['fwmark']:#x}/{r['fwmask']:#x} "
            f"lookup {TABLES.get(r['table'], r['table'])} proto {r['proto']}")


def object_text(o: dict) -> str:
    if o["kind"] == "route":
        return "route " + route_text(o)
    return f"address {o['address']}/{o['prefix']}"


def type_names(mask: int) -> list[str]:
    return [t.name for t in ChangeType if mask & t]
