"""`netcfgctl log-level [N]`: show or set the service's log level (the `log_level` property)."""

from __future__ import annotations

from ..errors import USAGE, CtlError

NAME = "log-level"
HELP = "show the log level, or set it to N (0 critical only ... 6 debug; setting needs root)"
READS = True


def add_arguments(parser) -> None:
    parser.add_argument("level", metavar="N", nargs="?", help="0-6")


async def run(args, ctx) -> int:
    client = await ctx.client()
    if args.level is not None:
        if not args.level.isdigit() or not 0 <= int(args.level) <= 6:
            raise CtlError(USAGE, f"log level must be 0-6, not '{args.level}'")
        await client.set("log_level", "u", int(args.level))
    level = await client.get("log_level")
    if ctx.out.json_mode:
        ctx.out.json({"log_level": level})
    else:
        ctx.out.line(f"log level {level}" + (" (set)" if args.level is not None else ""))
    return 0
