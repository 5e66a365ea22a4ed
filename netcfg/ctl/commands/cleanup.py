"""`netcfgctl cleanup DEVICE|--pid PID`: tear down what a process left (root)."""

from __future__ import annotations

from ..bus import ADMIN
from ..errors import USAGE, CtlError
from .devices import list_devices, resolve

NAME = "cleanup"
HELP = "tear down one device, or everything a process left (devices and protections) (root)"
READS = False


def add_arguments(parser) -> None:
    parser.add_argument("device", metavar="DEVICE", nargs="?", help="device path, its last element, or kernel name")
    parser.add_argument("--pid", type=int, metavar="PID", help="everything created by this process")


async def run(args, ctx) -> int:
    if (args.device is None) == (args.pid is None):
        raise CtlError(USAGE, "cleanup: give a DEVICE or --pid PID (one of them)")
    client = await ctx.client()
    if args.pid is not None:
        if args.pid <= 0:
            raise CtlError(USAGE, f"--pid must be a process ID, not {args.pid}")
        devices, protections = await client.call("CleanupProcess", "u", [args.pid], interface=ADMIN)
        ctx.out.line(f"pid {args.pid}: {devices} device(s) and {protections} protection(s) removed")
        return 0
    device = resolve(await list_devices(client), args.device)
    await client.call("CleanupDevice", "o", [device["path"]], interface=ADMIN)
    ctx.out.line(f"{device['name']} ({device['path']}) removed")
    return 0
