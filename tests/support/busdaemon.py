"""A private, system-type ``dbus-daemon`` for the tests.

The generated configuration is Debian's ``/usr/share/dbus-1/system.conf``
reduced to what a test bus needs:

* ``<type>system</type>``, so policies behave as on the real system bus;
* ``<listen>unix:path=<dir>/bus.sock</listen>`` and ``<auth>EXTERNAL</auth>``;
* the default policy of Debian's system bus (deny own, deny method calls,
  allow signals, replies and receiving, allow talking to the bus driver);
* an ``<include>`` of the repo's ``dbus-policy/net.openvpn.v3.netcfg.conf``
  by absolute path, so the policy under test is the file we ship;
* optional extra policy snippets, include directories and service
  directories given by the caller, and always ``<dir>/policy.d`` which
  :meth:`BusDaemon.add_policy` writes to (followed by ``ReloadConfig``), so a
  test can punch holes for e.g. a stand-in ``net.openvpn.v3.log`` service
  on the session-wide bus.

There is no ``<user>`` (the daemon stays root) and no ``<fork>``; it runs with
``--nofork --nopidfile --print-address``.  The socket directory is 0755 and
the socket itself world-connectable, so clients running as other UIDs can
connect.

The policy users (``openvpn``) must exist before the daemon starts: a
``<policy user="...">`` naming an unknown user is dropped with a warning.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable

from . import POLICY_FILE

DBUS_DAEMON = "dbus-daemon"

_HEADER = """<?xml version="1.0"?>
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
"""

# The default policy of Debian 12's /usr/share/dbus-1/system.conf.
DEFAULT_POLICY = """
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Containers1"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
"""


def policy_file(body: str) -> str:
    """Wrap policy XML (``<policy>`` elements) into a complete busconfig file."""
    return f"{_HEADER}<busconfig>\n{body}\n</busconfig>\n"


class BusDaemonError(RuntimeError):
    pass


class BusDaemon:
    """One private dbus-daemon.

    ``directory``: where config, socket and log go; a fresh 0755 directory
    under /tmp by default (pytest's tmp_path is 0700 and so unusable for
    clients running as other users).  ``policy_files``: busconfig files to
    include, the repo's netcfg policy by default.  ``extra_policy``: XML put
    verbatim inside ``<busconfig>`` after the includes.  ``includedirs`` and
    ``servicedirs``: absolute directories.  ``socket_path``: listen there
    instead of ``<directory>/bus.sock``.
    """

    def __init__(
        self,
        directory: str | os.PathLike | None = None,
        *,
        policy_files: Iterable[str | os.PathLike] = (POLICY_FILE,),
        extra_policy: Iterable[str] = (),
        includedirs: Iterable[str | os.PathLike] = (),
        servicedirs: Iterable[str | os.PathLike] = (),
        socket_path: str | os.PathLike | None = None,
    ) -> None:
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="netcfg-bus-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.policy_dir = self.dir / "policy.d"
        self.policy_dir.mkdir(exist_ok=True)
        os.chmod(self.policy_dir, 0o755)
        self.socket_path = Path(socket_path) if socket_path else self.dir / "bus.sock"
        self.config_path = self.dir / "bus.conf"
        self.log_path = self.dir / "dbus-daemon.log"
        self.policy_files = [Path(p).resolve() for p in policy_files]
        self.extra_policy = list(extra_policy)
        self.includedirs = [Path(p).resolve() for p in includedirs]
        self.servicedirs = [Path(p).resolve() for p in servicedirs]
        self.address: str = f"unix:path={self.socket_path}"
        self.proc: subprocess.Popen | None = None
        self._log = None

    # -- configuration -------------------------------------------------
    def config_text(self) -> str:
        parts = [
            "  <type>system</type>",
            f"  <listen>unix:path={self.socket_path}</listen>",
            "  <auth>EXTERNAL</auth>",
        ]
        parts += [f"  <servicedir>{d}</servicedir>" for d in self.servicedirs]
        parts.append(DEFAULT_POLICY)
        for p in self.policy_files:
            if not p.is_file():
                raise BusDaemonError(f"policy file {p} does not exist")
            parts.append(f"  <include>{p}</include>")
        parts += [f"  <includedir>{d}</includedir>" for d in self.includedirs]
        parts += self.extra_policy
        parts.append(f"  <includedir>{self.policy_dir}</includedir>")
        return policy_file("\n".join(parts))

    # -- life cycle ----------------------------------------------------
    def start(self, timeout: float = 10.0) -> "BusDaemon":
        if self.proc is not None:
            raise BusDaemonError("already started")
        if self.socket_path.exists():
            self.socket_path.unlink()
        self.config_path.write_text(self.config_text())
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                DBUS_DAEMON,
                f"--config-file={self.config_path}",
                "--nofork",
                "--nopidfile",
                "--print-address",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        # --print-address writes one line once the socket listens.
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            self._fail("dbus-daemon exited before printing its address")
        # The printed address carries a ",guid=..." suffix: keep ours.
        if not line.startswith(self.address):
            self._fail(f"unexpected address {line!r}, wanted {self.address}")
        while True:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(self.socket_path))
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self._fail("socket does not accept connections")
                time.sleep(0.02)
        return self

    @property
    def daemon_pid(self) -> int:
        """The process that routes messages (for CPU accounting in bench/)."""
        return self.proc.pid

    def _fail(self, what: str) -> None:
        self.stop()
        raise BusDaemonError(f"dbus-daemon: {what}\n--- log ---\n{self.log_text()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reload(self) -> None:
        """Make the daemon re-read its configuration (synchronous)."""
        # busctl (unlike dbus-send --address) registers with Hello first.
        # The daemon replies after the new configuration is in force.
        r = subprocess.run(
            [
                "busctl",
                f"--address={self.address}",
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "ReloadConfig",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if r.returncode != 0:
            raise BusDaemonError(
                f"ReloadConfig failed: {r.stderr.strip()}\n{self.log_text()}"
            )

    def add_policy(self, name: str, xml: str) -> Path:
        """Install a policy snippet (``<policy>`` elements, or a complete
        busconfig document) in the bus's policy.d and reload.  Returns the
        file, pass it to :meth:`remove_policy` to undo."""
        text = xml if "<busconfig" in xml else policy_file(xml)
        path = self.policy_dir / f"{name}.conf"
        path.write_text(text)
        os.chmod(path, 0o644)
        self.reload()
        return path

    def remove_policy(self, path: str | os.PathLike) -> None:
        Path(path).unlink(missing_ok=True)
        self.reload()

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``.  Returns the exit code."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            rc = self.proc.returncode
            if self.proc.stdout:
                self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        return rc

    def cleanup(self) -> None:
        """Stop and, if we made it, remove the directory."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "BusDaemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

