"""`netcfgctl devices`: every device, its owner, kernel link, addresses, routes, DNS."""

from __future__ import annotations

from ..bus import ADMIN
from ..describe import owner_text, with_user
from ..errors import FAILED, USAGE, CtlError
from ..output import join, listing

NAME = "devices"
HELP = "list devices: path, owner (UID, PID, process, bus name), kernel name and index, state, addresses, routes, DNS"
READS = True
STATE_STYLE = {"established": "green", "disabled": "yellow", "new": "cyan"}


def add_arguments(parser) -> None:
    pass


async def list_devices(client) -> list[dict]:
    devices = (await client.call("ListDevices", interface=ADMIN))[0]
    for d in devices:
        d["owner"] = with_user(d["owner"])
        d.setdefault("ifindex", None)
    return devices


def resolve(devices: list[dict], spec: str) -> dict:
    """A device named by its path, its path's last element, or its kernel name."""
    for key in ("path", "tail", "name"):
        found = [d for d in devices if (d["path"].rsplit("/", 1)[-1] if key == "tail" else d[key]) == spec]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CtlError(USAGE, f"'{spec}' names {len(found)} devices: give the path "
                                  f"({', '.join(d['path'] for d in found)})")
    raise CtlError(FAILED, f"no device '{spec}' (netcfgctl devices lists them)")


def print_summary(out, d: dict) -> None:
    state = out.paint(d["state"], STATE_STYLE.get(d["state"], "bold"))
    index = f", ifindex {d['ifindex']}" if d.get("ifindex") else ""
    kind = d["kind"] if d["kind"] == d.get("link_kind") else f"{d['kind']} ({d.get('link_kind')})"
    out.line(f"{out.paint(d['name'], 'bold')}  {state}, {kind}{index}")
    out.field("path", d["path"])
    out.field("owner", owner_text(d["owner"]))
    out.field("addresses", join(d["addresses"]))
    out.field("routes", str(d["routes"]))
    dns = d["dns"]
    text = join(dns["servers"])
    if dns["search"]:
        text += f"; search {join(dns['search'])}"
    if dns.get("scope"):
        text += f"; scope {dns['scope']}"
    out.field("DNS", text)


async def run(args, ctx) -> int:
    listing(ctx.out, "devices", await list_devices(await ctx.client()), "no devices", print_summary)
    return 0
