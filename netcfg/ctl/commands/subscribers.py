"""`netcfgctl subscribers`: who receives NetworkChange signals, as `openvpn3-admin netcfg-service --list-subscribers`."""

from __future__ import annotations

from ..describe import owner_text, type_names, user_name
from ..output import join, listing

NAME = "subscribers"
HELP = "NetworkChange subscribers: unique bus name, PID, UID, process and event types"
READS = True


def add_arguments(parser) -> None:
    pass


def _process(pid: int | None) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except (OSError, TypeError):
        return None


async def run(args, ctx) -> int:
    client = await ctx.client()
    subscribers = []
    for name, mask in (await client.call("NotificationSubscriberList"))[0]:
        creds = await client.credentials(name)  # as the admin tool asks the bus for the PID
        uid, pid = creds.get("UnixUserID"), creds.get("ProcessID")
        subscribers.append({"bus_name": name, "mask": mask, "types": type_names(mask), "uid": uid,
                            "user": user_name(uid), "pid": pid, "process": _process(pid)})
    listing(ctx.out, "subscribers", subscribers, "no subscribers", _print)
    return 0


def _print(out, s: dict) -> None:
    out.line(out.paint(s["bus_name"], "bold") + "  " + owner_text({**s, "bus_name": None}))
    out.field("events", join(s["types"]) + f" (mask {s['mask']})")
