"""Running D-Bus calls as another UID: the tests' one import for it.

A separate process, the client runner, executes JSON-described steps (method
calls with fds, signals, several connections, holding the connection open)
as ``openvpn``, as the unprivileged ``netcfg-test`` or as root, so the bus
policy and the service's own checks are exercised for real.  This module
only re-exports the names the tests use; the parts are:

* ``client_runner.py``, ``client_runner_steps.py``,
  ``client_runner_values.py`` -- the runner program (its input and output,
  the step kinds, the value encoding); runs as the other UID and needs only
  the standard library and ``dbus_fast``;
* ``client_runtime.py`` -- the world-readable copy of the runner and the
  interpreter it runs with, per user (``client_runtime``, ``ClientRuntime``);
* ``client_launch.py`` -- ``run_client`` / ``arun_client``: start the runner,
  feed it the steps, parse its results (``ClientError`` if the runner itself
  fails);
* ``client_handles.py`` -- ``HeldClient`` / ``AsyncHeldClient``: a runner
  holding its connection open (``hold=True``).

Usage::

    from support.client import arun_client, run_client

    res = await arun_client(bus.address, [
        {"destination": "net.openvpn.v3.netcfg", "path": "/net/openvpn/v3/netcfg",
         "interface": "net.openvpn.v3.netcfg", "member": "CreateVirtualInterface",
         "signature": "s", "body": ["tun-test"]},
        {"destination": "net.openvpn.v3.netcfg", "path": {"ref": [0, 0]},
         "interface": "org.freedesktop.DBus.Properties", "member": "Set",
         "signature": "ssv", "body": ["net.openvpn.v3.netcfg", "mtu",
                                      {"variant": ["u", 1400]}]},
    ], user="netcfg-test")
    assert res[0]["error"] == "org.freedesktop.DBus.Error.AccessDenied"

    held = run_client(bus.address, steps, user="openvpn", hold=True)
    ...                       # held.results: the steps' results
    held.kill()               # SIGKILL: the client disappears

``run_client`` blocks; in an async test use ``arun_client`` (same
arguments, ``hold=True`` gives an ``AsyncHeldClient`` with awaitable
``release()``/``terminate()``/``kill()``), or the test's own connections in
the same event loop cannot answer the client meanwhile.
"""

from __future__ import annotations

from .client_handles import AsyncHeldClient, HeldClient
from .client_launch import arun_client, run_client
from .client_runtime import ClientError, ClientRuntime, client_runtime

__all__ = [
    "AsyncHeldClient",
    "ClientError",
    "ClientRuntime",
    "HeldClient",
    "arun_client",
    "client_runtime",
    "run_client",
]
