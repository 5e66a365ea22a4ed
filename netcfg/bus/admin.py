"""The admin interface `net.openvpn.v3.netcfg.admin` on the manager object.

What `netcfgctl` needs and the original interface lacks: the service's
settings, every device with its owner, ledger and kernel view, the
ProtectSocket callers, and cleanup of another process's leftovers.  Every
member is root-only twice: the D-Bus policy lets only root send to this
interface, and each member's policy here is Policy.ROOT_ONLY (properties
included: the policy file cannot tell a Properties.Get of this interface
from one of the original, which everyone may call on the manager).

Values come from netcfg/overview.py as plain dicts and go on the wire as
`a{sv}`: a str is `s`, an int `x`, a float `d`, a bool `b`, a list `av`,
a dict `a{sv}`; a None leaves its key out (docs/api.md).

Other modules add members with `AdminFace(..., extensions=[Members(...)])`
(bus/members.py): each Method names its handler, called as
`handler(face, call, *args)`; properties bring their getters.
"""

from __future__ import annotations

import time

from dbus_fast import Variant

from .. import overview
from ..errors import TeardownIncomplete
from ..registry import MANAGER_PATH, DeviceRegistry
from .dispatch import Call
from .members import Members, Method, Policy, Property, merge
from .signals import Subscriptions

ADMIN_INTERFACE = "net.openvpn.v3.netcfg.admin"
ROOT = Policy.ROOT_ONLY


def to_wire(value) -> Variant:
    """A plain value as a Variant (see the module docstring for the types)."""
    if isinstance(value, bool):
        return Variant("b", value)
    if isinstance(value, int):
        return Variant("x", value)
    if isinstance(value, float):
        return Variant("d", value)
    if isinstance(value, str):
        return Variant("s", value)
    if isinstance(value, (list, tuple)):
        return Variant("av", [to_wire(v) for v in value if v is not None])
    if isinstance(value, dict):
        return Variant("a{sv}", wire_dict(value))
    raise TypeError(f"no wire type for {type(value).__name__}")


def wire_dict(d: dict) -> dict[str, Variant]:
    return {k: to_wire(v) for k, v in d.items() if v is not None}


def _opts(face: "AdminFace"):
    return face.registry.ctx.options


BASE_PROPERTIES = (
    Property("start_timestamp", "t", ROOT, lambda f: f.started_usec),
    Property("dns_backend", "s", ROOT, lambda f: f.registry.ctx.dns.backend.name),
    Property("redirect_method", "s", ROOT, lambda f: _opts(f).redirect_method),
    Property("so_mark", "u", ROOT, lambda f: _opts(f).set_somark or 0),
    Property("so_mark_table", "u", ROOT, lambda f: _opts(f).somark_table),
    Property("so_mark_priority", "u", ROOT, lambda f: _opts(f).somark_priority),
    Property("idle_exit", "d", ROOT, lambda f: float(_opts(f).idle_exit)),
    Property("state_dir", "s", ROOT, lambda f: _opts(f).state_dir),
    Property("settings_file", "s", ROOT, lambda f: _opts(f).settings_file or ""),
    Property("log_file", "s", ROOT, lambda f: _opts(f).log_file or ""),
    Property("device_count", "u", ROOT, lambda f: len(f.registry.sessions)),
    Property("protection_count", "u", ROOT, lambda f: len(f.registry.protections)),
    Property("subscriber_count", "u", ROOT, lambda f: len(f.subscriptions.by_name)),
)

BASE_METHODS = (
    Method("ListDevices", ROOT, "", "aa{sv}:devices"),
    Method("GetDevice", ROOT, "o:device_path", "a{sv}:device"),
    Method("ListProtections", ROOT, "", "aa{sv}:protections a{sv}:so_mark"),
    Method("CleanupDevice", ROOT, "o:device_path"),
    Method("CleanupProcess", ROOT, "u:pid", "u:devices u:protections"),
)


class AdminFace:
    interface = ADMIN_INTERFACE
    path = MANAGER_PATH
    signals = ()

    def __init__(self, registry: DeviceRegistry, subscriptions: Subscriptions,
                 extensions: tuple[Members, ...] = ()) -> None:
        self.registry = registry
        self.subscriptions = subscriptions
        self.started_usec = int(time.time() * 1_000_000)
        self.methods = merge(ADMIN_INTERFACE, BASE_METHODS, tuple(m for e in extensions for m in e.methods))
        self.properties = merge(ADMIN_INTERFACE, BASE_PROPERTIES, tuple(p for e in extensions for p in e.properties))

    def owner(self):
        return None

    async def ListDevices(self, call: Call):
        return [[wire_dict(overview.device_summary(s)) for s in self.registry.sessions.values()]]

    async def GetDevice(self, call: Call, device_path: str):
        session = self.registry.get(device_path)
        ctx = self.registry.ctx
        return [wire_dict(await overview.device_detail(session, ctx.watch, ctx.nl))]

    async def ListProtections(self, call: Call):
        names = await overview.link_names(self.registry.ctx.watch)
        prots = [wire_dict(overview.protection_view(p, names)) for p in self.registry.protections.values()]
        return [prots, wire_dict(overview.mark_view(self.registry.mark, names) or {})]

    async def CleanupDevice(self, call: Call, device_path: str):
        session = self.registry.get(device_path)
        errors = await self.registry.destroy(session, f"cleanup by root (uid {call.caller.uid}, pid {call.caller.pid})")
        if errors:
            raise TeardownIncomplete(errors)

    async def CleanupProcess(self, call: Call, pid: int):
        devices = sum(1 for s in self.registry.sessions.values() if s.owner.pid == pid)
        protections = sum(1 for p in self.registry.protections.values() if p.owner.pid == pid)
        await self.registry.cleanup_pid(pid)
        return [devices, protections]
