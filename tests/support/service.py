"""The netcfg service, started for one test.

``ServiceProcess`` runs, as root::

    ip netns exec NS PYTHON -m netcfg --bus-address ADDR --log-level 6 \\
        --log-file DIR/netcfg.log --idle-exit 0 --state-dir DIR/state \\
        --config DIR/netcfg.yaml --dns-backend none [extra]

``ip netns exec`` (and ``unshare``, ``sh -c 'exec ...'`` in the private-tun
variant) exec, so ``Popen.pid`` is the service's own pid.  ``start()`` waits
until ``net.openvpn.v3.netcfg`` has an owner on the bus (GetNameOwner polled
over one dbus-fast connection); on timeout or early exit it raises with the
log.

``private_tun=True`` wraps the command in ``unshare --mount`` with a tmpfs
on /dev/net holding its own ``tun`` node (0666): for a service that drops
privileges and must still open /dev/net/tun (the machine's node is 0600 and
there is no udev; see shared/notes/resolved-in-a-namespace.md).  The node is
the same device (10:200), so tun devices appear in the netns as usual.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from . import NETCFG_BUS_NAME, NETCFG_MANAGER_PATH

PRIVATE_TUN_SH = (
    "set -e; mount -t tmpfs -o mode=0755,size=64k netcfg-devnet /dev/net; "
    "mknod -m 0666 /dev/net/tun c 10 200; exec \"$@\""
)


class ServiceError(AssertionError):
    pass


class ServiceProcess:
    def __init__(
        self,
        bus_address: str,
        netns: str | None,
        directory: str | os.PathLike,
        *,
        extra_args: Sequence[str] = (),
        private_tun: bool = False,
        python: str = sys.executable,
        log_level: int = 6,
        env: dict[str, str] | None = None,
    ) -> None:
        self.bus_address = bus_address
        self.netns = netns
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "netcfg.log"
        self.output_path = self.dir / "netcfg.out"
        self.state_dir = self.dir / "state"
        self.settings_path = self.dir / "netcfg.yaml"
        self.settings_path.touch()
        self.extra_args = list(extra_args)
        self.private_tun = private_tun
        self.python = python
        self.log_level = log_level
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.unique_name: str | None = None
        self._out = None

    # -- command line --------------------------------------------------
    def argv(self) -> list[str]:
        cmd = [
            self.python, "-m", "netcfg",
            "--bus-address", self.bus_address,
            "--log-level", str(self.log_level),
            "--log-file", str(self.log_path),
            "--idle-exit", "0",
            "--state-dir", str(self.state_dir),
            # Our own YAML file: an empty one of the test's, never the
            # machine's /etc/netcfg/netcfg.yaml (read when no --config is given).
            "--config", str(self.settings_path),
            # Never the default `auto`: on a test machine it would fall back to
            # the host's own /etc/resolv.conf.  Tests that want DNS pass a
            # backend (a later option wins).
            "--dns-backend", "none",
            *self.extra_args,
        ]
        if self.private_tun:
            cmd = ["unshare", "--mount", "--propagation", "private",
                   "sh", "-c", PRIVATE_TUN_SH, "sh", *cmd]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        return cmd

    # -- life cycle ----------------------------------------------------
    async def start(self, timeout: float = 10.0) -> "ServiceProcess":
        if self.proc is not None:
            raise ServiceError("already started")
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        self._out = open(self.output_path, "ab")
        self.proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            env=env,
            start_new_session=True,
        )
        await self.wait_for_name(timeout)
        return self

    async def wait_for_name(self, timeout: float = 10.0) -> str:
        """Poll GetNameOwner until the service owns its name; returns the
        owner's unique name."""
        deadline = time.monotonic() + timeout
        bus = await MessageBus(bus_address=self.bus_address).connect()
        try:
            while True:
                if self.proc.poll() is not None:
                    self._close_output()
                    raise ServiceError(
                        f"netcfg exited with {self.proc.returncode} before owning "
                        f"{NETCFG_BUS_NAME}\n{self.diagnostics()}"
                    )
                reply = await bus.call(
                    Message(
                        destination="org.freedesktop.DBus",
                        path="/org/freedesktop/DBus",
                        interface="org.freedesktop.DBus",
                        member="GetNameOwner",
                        signature="s",
                        body=[NETCFG_BUS_NAME],
                    )
                )
                if reply.message_type == MessageType.METHOD_RETURN:
                    self.unique_name = reply.body[0]
                    return self.unique_name
                if time.monotonic() > deadline:
                    self.kill()
                    raise ServiceError(
                        f"netcfg did not own {NETCFG_BUS_NAME} within {timeout}s\n"
                        f"{self.diagnostics()}"
                    )
                await asyncio.sleep(0.05)
        finally:
            bus.disconnect()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    async def wait(self, timeout: float = 10.0) -> int | None:
        """Exit code, or None if still running after ``timeout`` (polls,
        does not block the loop)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.02)
        self._close_output()
        return self.proc.returncode

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; SIGKILL after ``timeout`` and raise."""
        if self.proc is None:
            raise ServiceError("not started")
        self.terminate()
        rc = await self.wait(timeout)
        if rc is None:
            self.kill()
            rc = await self.wait(5)
            raise ServiceError(
                f"netcfg did not exit within {timeout}s of SIGTERM (killed)\n"
                f"{self.diagnostics()}"
            )
        return rc

    def _close_output(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    # -- inspection ----------------------------------------------------
    def log_text(self) -> str:
        """The service's --log-file."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output_text(self) -> str:
        """Its stdout and stderr (tracebacks of crashes land here)."""
        try:
            return self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def diagnostics(self) -> str:
        return (
            f"command: {' '.join(self.argv())}\n"
            f"--- log ({self.log_path}) ---\n{self.log_text()}"
            f"--- stdout/stderr ---\n{self.output_text()}"
        )

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_targets(self) -> list[str]:
        out = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                out.append(os.readlink(f"/proc/{self.pid}/fd/{fd}"))
            except OSError:
                pass
        return sorted(out)

    async def ping(self, bus: MessageBus | None = None, timeout: float = 5.0) -> None:
        """org.freedesktop.DBus.Peer.Ping on the manager object."""
        own = bus is None
        if own:
            bus = await MessageBus(bus_address=self.bus_address).connect()
        try:
            reply = await asyncio.wait_for(
                bus.call(
                    Message(
                        destination=NETCFG_BUS_NAME,
                        path=NETCFG_MANAGER_PATH,
                        interface="org.freedesktop.DBus.Peer",
                        member="Ping",
                    )
                ),
                timeout,
            )
        except asyncio.TimeoutError:
            raise ServiceError(f"Ping timed out\n{self.diagnostics()}") from None
        finally:
            if own:
                bus.disconnect()
        if reply.message_type != MessageType.METHOD_RETURN:
            raise ServiceError(
                f"Ping failed: {reply.error_name} {reply.body}\n{self.diagnostics()}"
            )

    def assert_no_traceback(self) -> None:
        for what, text in (("log", self.log_text()), ("output", self.output_text())):
            if "Traceback" in text:
                raise ServiceError(f"Traceback in the service {what}\n{self.diagnostics()}")

    async def assert_healthy(self, bus: MessageBus | None = None) -> None:
        """Alive, answers Ping on the manager object, no Traceback logged."""
        if not self.alive():
            raise ServiceError(
                f"netcfg is not running (exit code {self.returncode})\n{self.diagnostics()}"
            )
        await self.ping(bus)
        self.assert_no_traceback()
