"""DCO tests: they need the real ovpn-dco-v2 kernel module, so they run only
inside the DCO VM (``scripts/dco-tests.sh``; ``tests/conftest.py`` does not
collect this directory elsewhere).  The fixtures of ``tests/conftest.py``
(``bus``, ``netns``, ``service``, ``users``...) work here as on the host.

Session-scoped, autouse:

* ``dco_family`` -> ``int``: the generic-netlink id of ``ovpn-dco-v2``,
  resolved once (resolving it autoloads the module).  When it does not
  resolve, every test here ERRORS with what the kernel has: a guest without
  the module is a broken harness, never a reason to skip.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from pyroute2.netlink.generic import GenericNetlinkSocket

DCO_FAMILY = "ovpn-dco-v2"


def _kernel_facts() -> str:
    def out(*cmd: str) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip()
        except OSError as e:
            return str(e)

    return "\n".join(
        [
            f"kernel: {os.uname().release}",
            f"NETCFG_DCOVM={os.environ.get('NETCFG_DCOVM')!r}",
            f"modinfo: {out('modinfo', '-F', 'filename', DCO_FAMILY)}",
            f"modprobe: {out('modprobe', '-v', DCO_FAMILY) or 'ok'}",
        ]
    )


@pytest.fixture(scope="session", autouse=True)
def dco_family() -> int:
    try:
        with GenericNetlinkSocket() as sock:
            sock.bind(DCO_FAMILY, None)
            return sock.prid
    except Exception as e:  # NetlinkError(ENOENT) when the family is unknown
        error = repr(e)
    # outside the except block: no chained traceback in the report
    pytest.fail(
        f"the generic netlink family {DCO_FAMILY} does not resolve ({error}): "
        f"the DCO tests need the real module (scripts/dco-tests.sh)\n"
        + _kernel_facts(),
        pytrace=False,
    )
