"""`netcfgctl unsubscribe NAME`: end a subscriber's subscription (NotificationUnsubscribe, as root)."""

from __future__ import annotations

NAME = "unsubscribe"
HELP = "end the NetworkChange subscription of a unique bus name (root)"
READS = False


def add_arguments(parser) -> None:
    parser.add_argument("name", metavar="NAME", help="the subscriber's unique bus name, e.g. :1.42")


async def run(args, ctx) -> int:
    await (await ctx.client()).call("NotificationUnsubscribe", "s", [args.name])
    if not ctx.out.json_mode:
        ctx.out.line(f"unsubscribed {args.name}")
    return 0
