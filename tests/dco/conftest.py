"""DCO tests: they need a real DCO kernel module, so they run only inside the
DCO VM (``scripts/dco-tests.sh``; ``tests/conftest.py`` does not collect
this directory elsewhere).  The guest boots one of two kernels: 6.1 with the
out-of-tree ``ovpn-dco-v2`` module, or a 6.16+ backports kernel with
mainline ``ovpn``.  The fixtures of ``tests/conftest.py`` (``bus``,
``netns``, ``service``, ``users``...) work here as on the host.

Session-scoped, autouse:

* ``dco_family`` -> the codec of the family the guest kernel has
  (``netcfg.dco.families.FAMILIES[name]``: ``.name``, ``.link_kind``,
  ``.peer_deleted_cmd``, the encoders), resolved in netcfg's own order
  (``netcfg.dco.probe.ORDER``; resolving autoloads the module).  When
  ``NETCFG_DCO_FAMILY`` is set (scripts/dco-tests.sh sets it per kernel),
  the family found must be that one.  When none resolves, or the wrong one,
  every test here ERRORS with what the kernel has: a guest without the
  module is a broken harness, never a reason to skip.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from pyroute2.netlink.generic import GenericNetlinkSocket

from netcfg.dco.families import FAMILIES
from netcfg.dco.probe import ORDER

def _kernel_facts() -> str:
    def out(*cmd: str) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip()
        except OSError as e:
            return str(e)

    lines = [f"kernel: {os.uname().release}", f"NETCFG_DCOVM={os.environ.get('NETCFG_DCOVM')!r}",
             f"NETCFG_DCO_FAMILY={os.environ.get('NETCFG_DCO_FAMILY')!r}"]
    for module in ORDER:  # each family's module has the family's name
        lines += [f"modinfo {module}: {out('modinfo', '-F', 'filename', module)}",
                  f"modprobe {module}: {out('modprobe', '-v', module) or 'ok'}"]
    return "\n".join(lines)


def _resolve() -> tuple[str | None, dict[str, str]]:
    """The first family of ORDER the kernel resolves, and why the others did not."""
    errors = {}
    for name in ORDER:
        try:
            with GenericNetlinkSocket() as sock:
                sock.bind(name, None)
                return name, errors
        except Exception as e:  # NetlinkError(ENOENT) when the family is unknown
            errors[name] = repr(e)
    return None, errors


@pytest.fixture(scope="session", autouse=True)
def dco_family():
    name, errors = _resolve()
    want = os.environ.get("NETCFG_DCO_FAMILY") or None
    if name is not None and want in (None, name):
        return FAMILIES[name]
    # outside any except block: no chained traceback in the report
    if name is None:
        problem = "no DCO generic netlink family resolves (" + "; ".join(f"{n}: {e}" for n, e in errors.items()) + ")"
    else:
        problem = f"this kernel resolves {name}, but NETCFG_DCO_FAMILY={want} was expected"
    pytest.fail(f"{problem}: the DCO tests need the real module (scripts/dco-tests.sh)\n" + _kernel_facts(),
                pytrace=False)
