"""The DCO VM itself (scripts/dco-tests.sh, scripts/dcovm/): inside the
guest the real module of the booted kernel answers (ovpn-dco-v2 on 6.1,
mainline ovpn on 6.16+), a link of its kind (``ovpn-dco``, ``ovpn``) can
be made in a test namespace, /dev/net/tun exists, processes running as other
users can import the checkout, and a real dbus-daemon with the netcfg
service answers on it.  If one of these fails, the harness is broken, not
the DCO code.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.generic import GenericNetlinkSocket

from netcfg import VERSION_STRING
from support import NETCFG_MANAGER_PATH
from support.lifecycle import Netcfg

MODULE = {"ovpn-dco-v2": "ovpn_dco_v2", "ovpn": "ovpn"}  # /proc/modules names


def test_family_resolves(dco_family):
    with GenericNetlinkSocket() as sock:
        sock.bind(dco_family.name, None)
        assert sock.prid > 0
        assert "peers" in sock.mcast_groups
    modules = [line.split()[0] for line in Path("/proc/modules").read_text().splitlines()]
    assert MODULE[dco_family.name] in modules


def test_dco_link_in_netns(netns, dco_family):
    """Created with pyroute2 inside the namespace, read back with ip -j."""
    ifname = "dcotest0"
    with IPRoute(netns=netns.name) as ipr:
        ipr.link("add", ifname=ifname, kind=dco_family.link_kind)
        try:
            link = netns.link(ifname)
            assert link is not None, netns.link_names()
            assert link["linkinfo"]["info_kind"] == dco_family.link_kind
            # not in the test process's own namespace
            assert subprocess.run(["ip", "link", "show", ifname], capture_output=True).returncode != 0
        finally:
            ipr.link("del", ifname=ifname)
    assert netns.link_names() == ["lo"]


def test_dev_net_tun():
    st = os.stat("/dev/net/tun")
    assert stat.S_ISCHR(st.st_mode)
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (10, 200)
    os.close(os.open("/dev/net/tun", os.O_RDWR))


def test_checkout_importable_as_other_user(users):
    """The interpreter, the venv and the checkout (/mnt/work) are readable
    by other UIDs, with no PYTHONPATH (the venv's .pth names the checkout)."""
    user = users.unprivileged
    r = subprocess.run(
        [sys.executable, "-c", "import netcfg, dbus_fast, pyroute2, google.protobuf; print(netcfg.__file__)"],
        user=user.uid, group=user.gid, extra_groups=[], cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/"},
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "/mnt/work/netcfg/__init__.py"


def test_openvpn_has_dco():
    out = subprocess.run(["openvpn", "--version"], capture_output=True, text=True).stdout
    assert "[DCO]" in out, out


@pytest.mark.asyncio
async def test_service_answers_version(service, root_bus):
    """A private dbus-daemon and netcfg (in a fresh namespace) run here."""
    assert await Netcfg(root_bus).get(NETCFG_MANAGER_PATH, "version") == VERSION_STRING
