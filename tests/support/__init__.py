"""Shared test infrastructure for the netcfg test suite.

Modules:

* ``busdaemon`` -- a private system-type ``dbus-daemon`` loading the repo's
  ``dbus-policy/`` file (``BusDaemon``).
* ``netns``     -- throw-away network namespaces, ``ip -j`` queries, snapshots
  for leak checks, an optional veth uplink to a "router" namespace (``Netns``).
* ``users``     -- the system users the tests need (``openvpn``,
  ``netcfg-test``) (``ensure_users``).
* ``service``   -- the netcfg service started for one test (``ServiceProcess``).
* ``client``    -- ``run_client``/``arun_client``: D-Bus calls made by a
  standalone client runner executed as another UID (the parts:
  ``client_runner*`` the runner program, ``client_runtime`` where it runs
  from, ``client_launch`` starting it, ``client_handles`` a held runner).

Everything here needs root (namespaces, other UIDs, the system-type bus), the
``tests/conftest.py`` fails the session early when it is not root.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = REPO_ROOT / "dbus-policy" / "net.openvpn.v3.netcfg.conf"

NETCFG_BUS_NAME = "net.openvpn.v3.netcfg"
NETCFG_MANAGER_PATH = "/net/openvpn/v3/netcfg"
# Debian's openvpn3-linux installs it as "openvpn"; the service's backend user.
OPENVPN_USER = "openvpn"
# An unprivileged user with no special D-Bus rights.
UNPRIVILEGED_USER = "netcfg-test"
