"""System users the tests need.

* ``openvpn``     -- the VPN backend user: the D-Bus policy lets it own
  ``net.openvpn.v3.netcfg`` and call every member.
* ``netcfg-test`` -- an unprivileged user with no D-Bus rights beyond the
  default policy.

Missing users are created with ``useradd --system --no-create-home --shell
/usr/sbin/nologin --user-group``; existing ones are left alone (also when
another process creates them concurrently).  The users stay after the tests:
they are cheap and the policy refers to them.
"""

from __future__ import annotations

import grp
import pwd
import subprocess
import time
from dataclasses import dataclass

from . import OPENVPN_USER, UNPRIVILEGED_USER


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int

    @property
    def group(self) -> str:
        return grp.getgrgid(self.gid).gr_name


def _lookup(name: str) -> User | None:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return User(name, pw.pw_uid, pw.pw_gid)


def ensure_user(name: str) -> User:
    """Return the user ``name``, creating it as a system user if missing."""
    user = _lookup(name)
    if user is not None:
        return user
    cmd = [
        "useradd",
        "--system",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "--user-group",
        name,
    ]
    # useradd may fail when another process holds /etc/passwd's lock or
    # creates the same user concurrently: re-check and retry a few times.
    err = ""
    for _ in range(20):
        r = subprocess.run(cmd, capture_output=True, text=True)
        user = _lookup(name)
        if user is not None:
            return user
        err = r.stderr.strip()
        time.sleep(0.25)
    raise RuntimeError(f"cannot create user {name}: {err}")


@dataclass(frozen=True)
class Users:
    openvpn: User
    unprivileged: User


def ensure_users() -> Users:
    """Both test users, created if missing."""
    return Users(ensure_user(OPENVPN_USER), ensure_user(UNPRIVILEGED_USER))
