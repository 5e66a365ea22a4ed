"""A private dbus-broker (the system bus of Fedora, Arch, RHEL) in place of dbus-daemon.

Same configuration file, same policy, same socket path as `BusDaemon`, so
a test or bench can run its clients against either.  dbus-broker-launch is
built to be started by systemd: it takes its listening socket from socket
activation, logs to journald's socket and connects to the system bus at
/run/dbus/system_bus_socket.  Here it runs in its own mount namespace in
which a tmpfs on /run holds a stand-in journal socket (a datagram reader writing to
the bus's log file) and /run/dbus/system_bus_socket points at our socket;
`systemd-socket-activate` does the socket activation.  Nothing of the host's
/run or /usr is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .busdaemon import BusDaemon, BusDaemonError

_JOURNAL_READER = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.bind('/run/systemd/journal/socket')\n"
    "f=open(sys.argv[1],'ab',0)\n"
    "while True: f.write(s.recv(65536)+b'\\n')\n"
)


# scripts/setup.sh unpacks Debian's package here rather than installing it
# (installed, it becomes the machine's system bus at the next boot).
UNPACKED = Path(__file__).resolve().parents[2] / ".cache" / "dbus-broker" / "usr" / "bin"


def _unpacked() -> bool:
    """Use the unpacked copy?  Only when the machine has none of its own."""
    return not shutil.which("dbus-broker-launch") and (UNPACKED / "dbus-broker-launch").is_file()


def available() -> bool:
    return (bool(shutil.which("dbus-broker-launch")) or _unpacked()) and \
        all(shutil.which(t) for t in ("systemd-socket-activate", "unshare"))


class BrokerBus(BusDaemon):
    """`BusDaemon` with dbus-broker behind the socket."""

    def start(self, timeout: float = 10.0) -> "BrokerBus":
        if self.proc is not None:
            raise BusDaemonError("already started")
        if not available():
            raise BusDaemonError("no dbus-broker: scripts/setup.sh unpacks it into .cache/dbus-broker")
        self.socket_path.unlink(missing_ok=True)
        self.config_path.write_text(self.config_text())
        script = "\n".join([
            "set -e",
            "mount -t tmpfs tmpfs /run",  # this namespace's own /run: the host's is not touched
            "mkdir -p /run/systemd/journal /run/dbus",
            # The launcher execs /usr/bin/dbus-broker: a read-only overlay
            # shows the unpacked binaries there, in this namespace only.
            f"mount -t overlay overlay -o lowerdir={UNPACKED}:/usr/bin /usr/bin" if _unpacked() else ":",
            f"ln -s {self.socket_path} /run/dbus/system_bus_socket",
            f'"$0" -c "$1" {self.log_path} &',
            "while [ ! -S /run/systemd/journal/socket ]; do sleep 0.01; done",
            f"export DBUS_SYSTEM_BUS_ADDRESS=unix:path={self.socket_path}",
            f"exec systemd-socket-activate -l {self.socket_path} "
            f"dbus-broker-launch --scope system --config-file {self.config_path}",
        ])
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script, sys.executable, _JOURNAL_READER],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:  # the socket exists at once; the broker answers once it is up
            try:
                out = subprocess.run(["busctl", f"--address={self.address}", "call", "org.freedesktop.DBus",
                                      "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId"],
                                     capture_output=True, timeout=2)
                if out.returncode == 0:
                    break
            except (OSError, subprocess.TimeoutExpired):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._fail("dbus-broker did not come up")
            time.sleep(0.05)
        # systemd-socket-activate makes the socket 0755: clients run as other
        # users too.  Only now is it sure to exist (busctl got through it).
        os.chmod(self.socket_path, 0o666)
        return self

    @property
    def daemon_pid(self) -> int:
        """The dbus-broker process itself (it routes; its launcher waits)."""
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "dbus-broker" and \
                            os.getpgid(int(pid)) == self.proc.pid:
                        return int(pid)
                except OSError:
                    continue
        raise BusDaemonError("no dbus-broker process")

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        return super().stop(timeout)
