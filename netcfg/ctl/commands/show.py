"""`netcfgctl show DEVICE`: one device, netcfg's ledger beside the kernel's view, drift marked."""

from __future__ import annotations

from ..bus import ADMIN
from ..describe import object_text, with_user
from ..output import join, yes_no
from .devices import list_devices, print_summary, resolve

NAME = "show"
HELP = "everything about one device (path, path's last element, or kernel name): ledger beside the kernel, drift marked"
READS = True
STATE_STYLE = {"ok": "green", "kernel": "dim", "missing": "red", "removed": "red", "foreign": "yellow"}
DRIFT = ("missing", "removed", "foreign")
HEAD = "  " + "state".ljust(10) + "netcfg".ljust(8) + "kernel".ljust(8) + "object"


def add_arguments(parser) -> None:
    parser.add_argument("device", metavar="DEVICE", help="device path, its last element (PID_NAME), or kernel name")


async def run(args, ctx) -> int:
    client = await ctx.client()
    summary = resolve(await list_devices(client), args.device)
    d = (await client.call("GetDevice", "o", [summary["path"]], interface=ADMIN))[0]
    d["owner"] = with_user(d["owner"])
    out = ctx.out
    if out.json_mode:
        out.json({"device": d})
        return 0
    print_summary(out, d)
    link = d["link"]
    if link.get("kernel"):
        out.field("link", f"{link['name']}, ifindex {link['ifindex']}, {link.get('kind') or '?'}, "
                          f"MTU {link['mtu']}, {'up' if link['up'] else 'down'}")
    else:
        out.field("link", "none in the kernel")
    c = d["config"]
    out.field("asked for", f"MTU {c['mtu']}, layer {c['layer'] or 'unset'}, txqueuelen {c['txqueuelen']}, "
                           f"redirect IPv4 {yes_no(c['reroute_ipv4'])}, IPv6 {yes_no(c['reroute_ipv6'])}, "
                           f"remote {c.get('remote') or '-'}")
    out.field("networks", join(f"{n['address']}/{n['prefix']}" + (" (exclude)" if n["exclude"] else "")
                               for n in c["networks"]))
    out.line()
    out.line(out.paint(HEAD, "bold"))
    made_by_kernel = [o for o in d["objects"] if o["state"] == "kernel"]
    for o in d["objects"]:
        state = o["state"]
        if state == "kernel":
            continue
        mark = "!" if state in DRIFT else " "
        cells = f"{mark} {state:<9} {yes_no(o['ledger']):<7} {yes_no(o['kernel']):<7} "
        out.wrapped(cells, object_text(o), STATE_STYLE.get(state, "bold"))
    if made_by_kernel:
        out.wrapped("  ", f"({len(made_by_kernel)} more objects on the link were made by the kernel itself: "
                          "prefix and local routes, link-local address; --json lists them)")
    for note in link["drift"]:
        out.line(out.paint(f"! {note}", "red"))
    if d["drift"]:
        out.line(out.paint(f"drift: {d['drift']} difference(s) between netcfg and the kernel (marked !)", "red"))
    else:
        out.line("no drift: the kernel holds what netcfg put there")
    return 0
