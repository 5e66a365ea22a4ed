"""Wiring: build the core and the faces, serve, and shut down in order.

Start: kernel handles, journal recovery (undo what a crashed run left),
bus connection, faces, name.  Stop (SIGTERM, SIGINT, idle exit): every
device is torn down through the same path as Destroy, protections released,
queued signals flushed, then the name is released.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time

from dbus_fast import Message, MessageType, NameFlag, RequestNameReply

from .. import inject
from .. import log as levels
from ..config import Options
from ..dco.probe import dco_available
from ..dns.order import DnsManager
from ..dns.select import select_backend
from ..errors import StartupError
from ..foreign import ForeignChanges
from ..kernel.netlink import Netlink
from ..kernel.watch import KernelWatch
from ..context import Context
from ..registry import DeviceRegistry
from ..session import Session
from ..state import Journal
from . import BUS_NAME
from .access import Credentials
from .admin import AdminFace
from .connection import connect
from .device import DeviceFace
from .dispatch import Dispatcher
from .logsignal import LOG_SERVICE, LogSignalHandler
from .manager import ManagerFace
from .pump import SignalPump
from .resolver_calls import ResolverCalls
from .signals import Subscriptions

log = logging.getLogger(__name__)

# How long shutdown waits for calls in progress before it cancels them: an
# AddNetworks of 100,000 routes or an Establish of as many takes 1-3 s on
# a loaded 2-core machine; systemd gives a stopping service 90 s.
CALLS_GRACE = 20.0
NAME_OWNER_RULE = ("type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                   "interface='org.freedesktop.DBus',member='NameOwnerChanged'")


async def _bus_call(bus, member: str, signature: str = "", body: list | None = None):
    reply = await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                   interface="org.freedesktop.DBus", member=member,
                                   signature=signature, body=body or []))
    if reply.message_type is not MessageType.METHOD_RETURN:
        return None
    return reply.body[0] if reply.body else True


class Service:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.stopping = asyncio.Event()
        self.last_activity = time.monotonic()

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    async def run(self) -> int:
        opts = self.options
        # Before anything that takes time: a SIGTERM during start-up must still
        # end in an orderly shutdown, not the default action.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, levels.sighup_ignored)
        inject.arm_from_environment(loop)
        if loop.get_debug():
            log.info("asyncio debug mode (PYTHONASYNCIODEBUG): slow callbacks and lost tasks are reported")
        self.journal = journal = _open_journal(opts.state_dir)
        self.nl = await Netlink().open()
        self.bus = bus = await _connect(opts.bus_address)
        dispatcher = self.dispatcher = Dispatcher(bus, Credentials(bus), self.touch)
        self.pump = SignalPump(bus)
        subscriptions = self.subscriptions = Subscriptions(self.pump)
        self.resolver_calls = ResolverCalls(bus)
        self.dns = DnsManager(await select_backend(opts, self.resolver_calls))
        self.watch = KernelWatch()
        await self.watch.start()
        ctx = Context(opts, self.nl, journal, self.dns, subscriptions, self.watch)
        self.registry = registry = DeviceRegistry(ctx, on_removed=lambda s: dispatcher.unexport(s.path))
        self.foreign = ForeignChanges(ctx.tunnels, lambda: registry.sessions.values())
        self.watch.subscribe(self.foreign.on_notice)

        manager = ManagerFace(registry, subscriptions, self._export_device, opts.log_level,
                              opts.upstream_file or "", dco_available)
        dispatcher.export(manager)
        dispatcher.export(AdminFace(registry, subscriptions))  # after the manager's own interface
        log_handler = LogSignalHandler(dispatcher, manager.path)
        logging.getLogger().addHandler(log_handler)
        manager.on_log_level = levels.widen

        async def name_lost(name: str) -> None:
            subscriptions.drop(name)
            await registry.owner_gone(name)

        def owner_changed(name: str, new_owner: str) -> None:
            if name == LOG_SERVICE:
                log_handler.follow(new_owner)

        dispatcher.on_name_lost = name_lost
        dispatcher.on_owner_changed = owner_changed
        bus.add_message_handler(dispatcher.handle)
        self.pump.start()
        await _bus_call(bus, "AddMatch", "s", [NAME_OWNER_RULE])
        log_handler.follow(await _bus_call(bus, "GetNameOwner", "s", [LOG_SERVICE]))
        self.log_handler = log_handler
        reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            raise StartupError(f"cannot own {BUS_NAME}: {reply.name} (another instance, or the D-Bus policy)")
        # Only the name's owner may clean up: recovery and the sweep assume no
        # other netcfg manages this namespace.  Calls wait for `ready`.
        await self.dns.start()  # restores what a killed run left (resolv.conf, resolved links)
        await registry.recover()
        # What exists now (modules, classes, the bus) lives as long as we do:
        # out of the collector's sight, a full collection during an event
        # burst scans only what the burst made (measured, 10,000 routes x 10
        # subscribers: gen-2 pauses of 16-28 ms -> 7-11 ms).
        gc.collect()
        gc.freeze()
        dispatcher.ready.set()
        log.info("netcfg serving %s (redirect method %s%s, DNS backend %s)", BUS_NAME, opts.redirect_method,
                 f", so-mark {opts.set_somark}" if opts.set_somark is not None else "", self.dns.backend.name)

        watchers = [asyncio.ensure_future(self._idle_watch()), asyncio.ensure_future(self._bus_watch())]
        await self.stopping.wait()
        for w in watchers:
            w.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        # Calls from now on are refused, those in progress finish first:
        # nothing may run beside the teardown, or escape it.
        await dispatcher.quiesce(CALLS_GRACE)
        return await self.shutdown()

    def _export_device(self, session: Session, log_level: int) -> None:
        self.dispatcher.export(DeviceFace(session, self.registry, log_level, self.dispatcher.export))

    async def _idle_watch(self) -> None:
        minutes = self.options.idle_exit
        if not minutes:
            return
        limit = minutes * 60
        while True:
            await asyncio.sleep(min(limit / 2, 30))
            if self._in_use():
                continue
            if time.monotonic() - self.last_activity > limit:
                log.info("idle for %.1f minutes without devices: exiting", minutes)
                self.stopping.set()
                return

    def _in_use(self) -> bool:
        # A client that protected its socket but has no device yet (the real
        # one protects first, then logs in), or a subscriber, still needs us.
        r = self.registry
        return bool(r.sessions or r.protections or self.subscriptions.by_name or self.dispatcher.busy())

    async def _bus_watch(self) -> None:
        try:
            await self.bus.wait_for_disconnect()
        except Exception as e:
            log.critical("lost the bus connection: %s", e)
        else:
            log.critical("the bus connection was closed")
        self.stopping.set()

    async def shutdown(self) -> int:
        """Tear everything down; the exit code: 0, or 4 when DNS could not be given back (spec 4.3).

        Each step logs its own failures and never raises, so one failure does
        not leave the rest (DNS above all) undone.
        """
        log.info("shutting down: tearing down %d devices", len(self.registry.sessions))
        await self.registry.shutdown()
        await self.pump.stop()
        dns_restored = await self.dns.stop()
        self.log_handler.detach()
        if self.bus.connected:
            try:
                await self.bus.release_name(BUS_NAME)
            except Exception as e:
                log.debug("releasing %s: %s", BUS_NAME, e)
            self.bus.disconnect()
        await self.dispatcher.close()
        await self.resolver_calls.close()
        await self.foreign.stop()
        await self.watch.stop()
        await self.nl.close()
        self.journal.close()
        return 0 if dns_restored else 4


def _open_journal(directory: str) -> Journal:
    """The journal in --state-dir, which must be a directory we can write."""
    try:
        journal = Journal(directory)
        probe = os.path.join(directory, f".probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise StartupError(f"cannot use the state directory (--state-dir) {directory}: {e.strerror or e}") from None
    return journal


async def _connect(address: str | None):
    try:
        return await connect(address)
    except Exception as e:
        where = address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "unix:path=/run/dbus/system_bus_socket"
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise StartupError(f"cannot connect to the D-Bus bus at {where}: {reason}") from None


def main(options: Options) -> int:
    """Serve until stopped; StartupError (exit code 3) propagates to __main__."""
    return asyncio.run(Service(options).run())
