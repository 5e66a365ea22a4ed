"""Fixtures of the DNS tests (see nsenv.py, packages.py, resolved_env.py).

* ``etc_ns``: a mount namespace with a scratch /etc (overlay) and /run
  (tmpfs); its /etc/resolv.conf starts as SYSTEM_RESOLV_CONF.
* ``openresolv_ns``: the same, with Debian's openresolv laid over /usr and
  its /etc/resolvconf.conf in place (fetched and unpacked on first use).
* ``resolved_env``: the real systemd-resolved in a network + mount
  namespace with a private system bus and DNS servers (resolved_env.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import packages  # noqa: E402
from nsenv import Namespace  # noqa: E402

SYSTEM_RESOLV_CONF = """\
# the machine's own resolver settings
nameserver 192.0.2.53
nameserver 192.0.2.54
search corp.example lab.example
options edns0 trust-ad
domain corp.example
"""


@pytest.fixture
def etc_ns():
    ns = Namespace().start()
    try:
        ns.write("/etc/resolv.conf", SYSTEM_RESOLV_CONF, mode=0o644)
        yield ns
    finally:
        ns.stop()


@pytest.fixture
def openresolv_ns():
    pkg = packages.openresolv()
    ns = Namespace(layers={"/usr": pkg.usr_layer}).start()
    try:
        # The package's own configuration, plus: never restart a service of
        # the machine from a test (the subscribers would try nscd, dnsmasq, ...).
        config = pkg.config.read_text() + "".join(
            f"{sub}_restart=:\n" for sub in ("libc", "dnsmasq", "unbound", "pdnsd", "named", "pdns_recursor"))
        ns.write("/etc/resolvconf.conf", config)
        ns.write("/etc/resolv.conf", SYSTEM_RESOLV_CONF)
        yield ns
    finally:
        ns.stop()


@pytest.fixture(scope="module")
def resolved_env():
    from resolved_env import ResolvedEnv

    env = ResolvedEnv().start()
    try:
        yield env
    finally:
        env.stop()
