"""`netcfgctl status`: the service's version, settings, uptime and counts."""

from __future__ import annotations

import datetime
import time

from ..bus import ADMIN
from ..errors import DENIED, CtlError
from ..output import join

NAME = "status"
HELP = "version, DNS backend, redirect method and so-mark, uptime, counts, state dir and config files"
READS = True


def add_arguments(parser) -> None:
    pass


async def collect(client) -> dict:
    admin = await client.get_all(ADMIN)
    if "start_timestamp" not in admin:  # GetAll leaves out what the caller may not read
        raise CtlError(DENIED, "status: permission denied; this needs root")
    started = admin["start_timestamp"] / 1e6
    mark = admin["so_mark"] or None
    return {
        "version": await client.get("version"),
        "dns_backend": admin["dns_backend"],
        "redirect_method": admin["redirect_method"],
        "so_mark": mark,
        "so_mark_table": admin["so_mark_table"] if mark else None,
        "so_mark_priority": admin["so_mark_priority"] if mark else None,
        "log_level": await client.get("log_level"),
        "log_file": admin["log_file"] or None,
        "idle_exit": admin["idle_exit"],
        "start_time": datetime.datetime.fromtimestamp(started).astimezone().isoformat(timespec="seconds"),
        "uptime_seconds": max(0, int(time.time() - started)),
        "devices": admin["device_count"],
        "protections": admin["protection_count"],
        "subscribers": admin["subscriber_count"],
        "state_dir": admin["state_dir"],
        "config_file": await client.get("config_file") or None,
        "settings_file": admin["settings_file"] or None,
    }


def duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


async def run(args, ctx) -> int:
    s = await collect(await ctx.client())
    out = ctx.out
    if out.json_mode:
        out.json(s)
        return 0
    out.line(f"{out.paint(s['version'], 'bold')}, up {duration(s['uptime_seconds'])} (since {s['start_time']})")
    redirect = s["redirect_method"]
    if s["so_mark"]:
        redirect += f", so-mark {s['so_mark']:#x} (table {s['so_mark_table']}, rule priority {s['so_mark_priority']})"
    out.field("DNS backend", s["dns_backend"])
    out.field("redirect", redirect)
    out.field("devices", str(s["devices"]))
    out.field("protections", str(s["protections"]))
    out.field("subscribers", str(s["subscribers"]))
    out.field("log level", f"{s['log_level']}" + (f", to {s['log_file']}" if s["log_file"] else ""))
    out.field("idle exit", f"{s['idle_exit']:g} min" if s["idle_exit"] else "never")
    out.field("state dir", s["state_dir"])
    out.field("netcfg.json", join([s["config_file"]], "- (no --state-dir)"))
    out.field("settings", join([s["settings_file"]], "- (none read)"))
    return 0
