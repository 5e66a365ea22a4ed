"""`netcfgctl protections`: ProtectSocket callers, their host routes, the so-mark rule and table."""

from __future__ import annotations

from ..bus import ADMIN
from ..describe import owner_text, route_text, rule_text, with_user

NAME = "protections"
HELP = "ProtectSocket callers with their host routes, and the --set-somark rule and table"
READS = True


def add_arguments(parser) -> None:
    pass


async def run(args, ctx) -> int:
    protections, mark = await (await ctx.client()).call("ListProtections", interface=ADMIN)
    for p in protections:
        p["owner"] = with_user(p["owner"])
        p.setdefault("remote", None)
        p.setdefault("device", None)
    out = ctx.out
    if out.json_mode:
        out.json({"protections": protections, "so_mark": mark or None})
        return 0
    if not protections:
        out.line("no protected sockets")
    for p in protections:
        out.line(out.paint(p["owner"].get("bus_name", "?"), "bold") + "  " + owner_text({**p["owner"], "bus_name": None}))
        out.field("remote", f"{p['remote']} (IPv{p['family']})" if p["remote"] else "- (nothing protected now)")
        out.field("device", p["device"] or "-")
        for r in p["routes"]:
            out.field("host route", route_text(r))
    if mark:
        out.line()
        out.line(out.paint(f"so-mark {mark['mark']:#x}", "bold") + f": table {mark['table']}, rule priority "
                 f"{mark['priority']}, held by {mark['holders']} protection(s)")
        for r in mark["rules"]:
            out.field("rule", rule_text(r))
        for r in mark["routes"]:
            out.field("route", route_text(r))
    return 0
