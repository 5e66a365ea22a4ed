#!/usr/bin/env python3
"""Drive netcfg's DNS core (DnsManager + a real backend) from JSON lines.

Runs inside the test namespace (nsenv.Namespace.runner) as the service
would: the same DnsManager, the backend chosen by netcfg.dns.select, and
for systemd-resolved the same bus caller (netcfg.bus.resolver_calls) on a
real bus.  One JSON object per stdin line, one JSON reply per stdout line:

    {"op": "start", "backend": "resolv-conf", "resolv_conf": "/etc/resolv.conf",
     "state_dir": "/run/netcfg-test/state", "bus": "unix:path=..." | null}
    {"op": "new", "id": "a"}
    {"op": "set", "id": "a", "servers": [...], "domains": [...], "scope": "tunnel",
     "dnssec": "yes", "transport": "dot"}          (each key optional)
    {"op": "enable", "id": "a", "device": "vpn0"}  -> {"ok": true, "changes": [[type, device, details], ...]}
    {"op": "withdraw" | "disable" | "remove", "id": "a"}
    {"op": "aggregate"}                            -> {"ok": true, "servers": [...], "domains": [...]}
    {"op": "settings", "id": "a"}                  -> {"ok": true, "enabled": ..., "servers": ..., ...}
    {"op": "stop"}                                 (backend stop: give everything back)

A failure replies {"ok": false, "error": "<exception class>", "text": "..."}.
Logging (DEBUG) goes to stderr, which the test collects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from netcfg.config import Options  # noqa: E402
from netcfg.dns.order import DnsManager  # noqa: E402
from netcfg.dns.select import select_backend  # noqa: E402
from netcfg.errors import NetcfgError  # noqa: E402


class NoBus:
    """For runs without a bus: nothing is on it."""

    async def call(self, *args, **kw):
        raise NetcfgError("no bus in this test")

    async def has_owner(self, name):
        return False

    async def activatable(self, name):
        return False

    async def watch(self, name, callback):
        pass


class Runner:
    def __init__(self) -> None:
        self.manager: DnsManager | None = None
        self.devices = {}
        self.bus = None

    async def op_start(self, cmd):
        opts = Options(dns_backend=cmd.get("backend", "auto"), resolv_conf=cmd.get("resolv_conf"),
                       state_dir=cmd.get("state_dir", "/run/netcfg-test/state"))
        caller = NoBus()
        if cmd.get("bus"):
            from netcfg.bus.connection import connect
            from netcfg.bus.resolver_calls import ResolverCalls

            self.bus = await connect(cmd["bus"])
            caller = ResolverCalls(self.bus)
        self.manager = DnsManager(await select_backend(opts, caller))
        await self.manager.start()
        return {"backend": self.manager.backend.name}

    async def op_new(self, cmd):
        self.devices[cmd["id"]] = self.manager.new_settings()

    async def op_set(self, cmd):
        s = self.devices[cmd["id"]]
        if "servers" in cmd:
            s.add_servers(cmd["servers"])
        if "domains" in cmd:
            s.add_domains(cmd["domains"])
        if "scope" in cmd:
            s.scope = cmd["scope"]
        if "dnssec" in cmd:
            s.set_dnssec(cmd["dnssec"])
        if "transport" in cmd:
            s.set_transport(cmd["transport"])

    async def op_enable(self, cmd):
        return {"changes": _changes(await self.manager.enable(self.devices[cmd["id"]], cmd.get("device", "")))}

    async def op_withdraw(self, cmd):
        return {"changes": _changes(await self.manager.withdraw(self.devices[cmd["id"]]))}

    async def op_disable(self, cmd):
        return {"changes": _changes(await self.manager.disable(self.devices[cmd["id"]]))}

    async def op_remove(self, cmd):
        changes, _errors = await self.manager.remove(self.devices.pop(cmd["id"]))
        return {"changes": _changes(changes)}

    async def op_aggregate(self, cmd):
        return {"servers": self.manager.aggregate("servers"), "domains": self.manager.aggregate("domains")}

    async def op_settings(self, cmd):
        s = self.devices[cmd["id"]]
        return {"enabled": s.enabled, "device": s.device, "servers": s.servers, "domains": s.domains}

    async def op_stop(self, cmd):
        await self.manager.stop()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            cmd = json.loads(line)
            try:
                result = await getattr(self, "op_" + cmd["op"])(cmd) or {}
                reply = {"ok": True, **result}
            except Exception as e:
                logging.getLogger("runner").debug("%s failed", cmd["op"], exc_info=True)
                reply = {"ok": False, "error": type(e).__name__, "text": str(e)}
            print(json.dumps(reply), flush=True)


def _changes(changes):
    return [[int(c.type), c.device, c.details] for c in changes]


def main() -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    asyncio.run(Runner().serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
