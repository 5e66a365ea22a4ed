"""`netcfgctl`: parse the command line, run one command, map failures to exit codes."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from .. import VERSION_STRING
from .bus import Client
from .commands import COMMANDS
from .errors import EXIT_CODES, FAILED, CtlError
from .output import Output

DESCRIPTION = ("Show and manage what netcfg (net.openvpn.v3.netcfg, the OpenVPN 3 network-configuration "
               "service) holds: devices, their kernel objects, protections, subscribers, its log level "
               "and configuration files.  Talks to the service over D-Bus only; most commands need root.")


class Context:
    """What a command gets: the output, and the bus client (connected on first use)."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self._client: Client | None = None

    async def client(self) -> Client:
        if self._client is None:
            self._client = await Client().connect()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(prog="netcfgctl", description=DESCRIPTION, epilog=epilog)
    parser.add_argument("--version", action="version", version=f"netcfgctl ({VERSION_STRING})")
    parser.add_argument("--json", action="store_true", help="print JSON (commands that read; see netcfgctl(8))")
    parser.add_argument("--no-color", action="store_true", help="no colour, even on a terminal")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        if command.READS:  # also after the command: `netcfgctl devices --json`
            p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                           help="print JSON instead of text")
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


async def _run(args: argparse.Namespace, out: Output) -> int:
    ctx = Context(out)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):  # `watch` ends cleanly on Ctrl-C
        loop.add_signal_handler(signum, task.cancel)
    try:
        return await args.run(args, ctx) or 0
    except asyncio.CancelledError:
        return 130
    finally:
        ctx.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Output(json_mode=args.json, no_color=args.no_color)
    try:
        return asyncio.run(_run(args, out))
    except CtlError as e:
        print(f"netcfgctl: {e.message}", file=sys.stderr)
        return e.code
    except BrokenPipeError:  # `netcfgctl watch | head`
        return 0
    except Exception as e:  # a bug of ours: one line, not a traceback
        print(f"netcfgctl: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
