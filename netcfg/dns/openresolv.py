"""`--dns-backend openresolv`: hand each device's DNS to resolvconf(8).

Asked for upstream (#252) and declined there.  Each device is registered as
the interface `<ifname>.netcfg` with `resolvconf -a`, its values piped in in
resolv.conf form; openresolv merges all sources into /etc/resolv.conf (and
into dnsmasq/unbound configurations when those are set up) and keeps its
own backup.  Withdrawn with `resolvconf -f -d <ifname>.netcfg`.

Scope: `global` registers the device exclusive (`-x`: "only the latest
exclusive interface is used"), so the VPN's servers replace the others;
`tunnel` registers it private (`-p`): its servers are used only for its
domains by a local resolver (dnsmasq, unbound, ...) configured through
openresolv.  With plain libc there is no per-domain routing, so a private
interface contributes its search domains but not its servers (documented in
docs/dns.md).

The `.netcfg` suffix marks what is ours: at start, entries left by a run
that did not finish are deleted (resolvconf -i '*.netcfg').
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil

from ..errors import BackendUnavailable
from .resolv_conf_format import interface_text
from .settings import ResolverSettings

log = logging.getLogger(__name__)

SUFFIX = ".netcfg"
TIMEOUT = 10.0


class OpenresolvBackend:
    name = "openresolv"
    stage = "post"

    def __init__(self, command: str = "resolvconf") -> None:
        self.command = command
        self.names: dict[int, str] = {}  # settings.index -> registered interface name
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        return f"openresolv: per-device entries '<interface>{SUFFIX}' through {self.command} -a/-d"

    # -- lifetime --

    async def start(self, active) -> None:
        version = await openresolv_version(self.command)
        if version is None:
            log.warning("%s is not installed (or not openresolv): DNS settings are applied once it is; "
                        "until then Establish with DNS servers fails", self.command)
            return
        log.debug("using %s", version)
        async with self._lock:
            try:
                listed = await self._run("-i", f"*{SUFFIX}")
            except BackendUnavailable:
                return  # nothing registered: resolvconf -i fails when its directory is empty
            for name in listed.split():
                if name.endswith(SUFFIX):
                    log.warning("removing DNS entry %s left by a run that did not finish", name)
                    await self._delete(name)

    async def stop(self) -> None:
        async with self._lock:
            for name in list(self.names.values()):
                await self._delete(name)
            self.names.clear()

    # -- applying --

    async def apply(self, active: list[ResolverSettings], changed: ResolverSettings | None) -> None:
        async with self._lock:
            if changed is not None:
                await self._add(changed)
                return
            for settings in reversed(active):  # oldest first: the newest is the latest exclusive
                try:
                    await self._add(settings)
                except BackendUnavailable as e:
                    log.error("%s", e)

    async def revert(self, settings: ResolverSettings, active: list[ResolverSettings]) -> None:
        async with self._lock:
            name = self.names.pop(settings.index, None)
            if name is not None:
                await self._delete(name, raise_errors=True)

    async def _add(self, settings: ResolverSettings) -> None:
        name = f"{settings.device}{SUFFIX}"
        flags = ["-x"] if settings.scope == "global" else ["-p"]
        await self._run(*flags, "-a", name, stdin=interface_text(settings))
        previous = self.names.get(settings.index)
        self.names[settings.index] = name
        if previous is not None and previous != name:  # a second Establish: new tun
            await self._delete(previous)
        log.debug("openresolv: %s registered (%s)", name, " ".join(flags))

    async def _delete(self, name: str, raise_errors: bool = False) -> None:
        try:
            await self._run("-f", "-d", name)
        except BackendUnavailable as e:
            log.error("%s", e)
            if raise_errors:
                raise

    async def _run(self, *args: str, stdin: str | None = None) -> str:
        what = f"DNS (openresolv): {self.command} {' '.join(args)}"
        try:
            proc = await asyncio.create_subprocess_exec(
                self.command, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError:
            raise BackendUnavailable(f"{what}: {self.command} is not installed") from None
        except OSError as e:
            raise BackendUnavailable(f"{what}: {e.strerror}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate((stdin or "").encode()), TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise BackendUnavailable(f"{what}: no answer within {TIMEOUT:.0f} s") from None
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
            raise BackendUnavailable(f"{what}: exit code {proc.returncode}{': ' + detail if detail else ''}")
        return out.decode(errors="replace")


async def openresolv_version(command: str = "resolvconf") -> str | None:
    """"openresolv X.Y.Z" if `command` is openresolv; None if missing or another resolvconf
    (Debian's resolvconf and systemd's resolvconf shim take -a/-d but not -x/-p)."""
    path = shutil.which(command)
    if path is None:
        return None
    try:
        proc = await asyncio.create_subprocess_exec(
            path, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C"})
        out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        return None
    first = out.decode(errors="replace").splitlines()[:1]
    return first[0] if first and first[0].startswith("openresolv") else None
