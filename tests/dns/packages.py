"""Debian packages the DNS tests run, unpacked into a cache, never installed.

Installing systemd-resolved or openresolv rewires the machine's own
/etc/resolv.conf, so the tests fetch the .deb with `apt-get download` and
unpack it with `dpkg-deb -x` into CACHE (default /var/cache/netcfg-tests,
or $NETCFG_TEST_CACHE).  The programs then run inside a mount namespace
whose /etc (and, for openresolv, /usr) is an overlay, so their writes never
reach the machine (see nsenv.py and shared/notes/resolved-in-a-namespace.md).

systemd-resolved links the private libsystemd-shared-<major>.so through its
RUNPATH; it must be the build it was made with.  We take the version of the
installed libsystemd-shared when the archive still has it, else the
candidate version of both packages, and put the unpacked library directory
first in LD_LIBRARY_PATH (RUNPATH, unlike RPATH, yields to it).

Everything is keyed by version and guarded by a lock file, so concurrent
test sessions share one download.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("NETCFG_TEST_CACHE", "/var/cache/netcfg-tests"))
ARCH_LIBDIR = "usr/lib/x86_64-linux-gnu/systemd"


class PackageError(AssertionError):
    """A package the tests need could not be fetched (the message says why)."""


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check,
                          env={**os.environ, "LC_ALL": "C"})


def installed_version(package: str) -> str | None:
    r = _run("dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", package, check=False)
    status, _, version = r.stdout.strip().partition(" ")
    return version if r.returncode == 0 and status == "installed" and version else None


def candidate_version(package: str) -> str | None:
    for line in _run("apt-cache", "policy", package, check=False).stdout.splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            value = line.split(":", 1)[1].strip()
            return None if value == "(none)" else value
    return None


def _download(specs: list[str], into: Path) -> None:
    """apt-get download, with one `apt-get update` retry for stale package lists."""
    for attempt in range(2):
        r = _run("apt-get", "download", "-q", *specs, check=False)
        if r.returncode == 0:
            return
        if attempt == 0:
            _run("apt-get", "update", "-q", check=False)
    raise PackageError(f"apt-get download {' '.join(specs)} failed:\n{r.stdout}\n{r.stderr}")


def fetch(package: str, version: str, extra: tuple[tuple[str, str], ...] = ()) -> Path:
    """Unpack package=version (plus `extra` packages) into one cache directory."""
    name = f"{package}_{version}".replace(":", "%") + "".join(f"+{p}" for p, _ in extra)
    target = CACHE / name
    if (target / ".complete").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            work = Path(tmp)
            os.chmod(work, 0o755)  # apt's _apt sandbox user writes the .deb here
            cwd = os.getcwd()
            os.chdir(work)
            try:
                _download([f"{package}={version}", *(f"{p}={v}" for p, v in extra)], work)
            finally:
                os.chdir(cwd)
            tree = work / "tree"
            for deb in sorted(work.glob("*.deb")):
                # One tree per package: systemd-resolved's /sbin/resolvconf
                # symlink must not land on top of another package's files.
                dest = tree / deb.name.split("_", 1)[0]
                dest.mkdir(parents=True)
                _run("dpkg-deb", "-x", str(deb), str(dest))
            shutil.rmtree(target, ignore_errors=True)
            tree.rename(target)
            (target / ".complete").write_text(version + "\n")
    return target


@dataclass(frozen=True)
class Resolved:
    root: Path  # the systemd-resolved package tree
    libdir: Path  # libsystemd-shared-*.so that matches the binary
    version: str

    @property
    def binary(self) -> Path:
        return self.root / "lib/systemd/systemd-resolved"

    @property
    def resolvectl(self) -> Path:
        return self.root / "usr/bin/resolvectl"

    @property
    def bus_policy(self) -> Path:
        return self.root / "usr/share/dbus-1/system.d/org.freedesktop.resolve1.conf"

    def env(self) -> dict[str, str]:
        return {"LD_LIBRARY_PATH": str(self.libdir)}


def systemd_resolved() -> Resolved:
    installed = installed_version("libsystemd-shared")
    if installed is None:
        raise PackageError("libsystemd-shared is not installed: is this Debian with systemd?")
    try:
        tree = fetch("systemd-resolved", installed)
        return Resolved(tree / "systemd-resolved", Path("/") / ARCH_LIBDIR, installed)
    except PackageError:
        pass  # the archive moved on: take the candidate and its own library
    candidate = candidate_version("systemd-resolved")
    if candidate is None:
        raise PackageError("no candidate version of systemd-resolved in the package lists")
    tree = fetch("systemd-resolved", candidate, (("libsystemd-shared", candidate),))
    return Resolved(tree / "systemd-resolved", tree / "libsystemd-shared" / ARCH_LIBDIR, candidate)


@dataclass(frozen=True)
class Openresolv:
    root: Path

    @property
    def usr_layer(self) -> Path:
        """A tree to lay over /usr: sbin/resolvconf and lib/resolvconf/ (merged /usr)."""
        return self.root / "usr-layer"

    @property
    def config(self) -> Path:
        return self.root / "etc/resolvconf.conf"


def openresolv() -> Openresolv:
    version = installed_version("openresolv") or candidate_version("openresolv")
    if version is None:
        raise PackageError("no openresolv in the package lists")
    tree = fetch("openresolv", version) / "openresolv"
    layer = tree / "usr-layer"
    if not layer.exists():
        # Debian 12 has a merged /usr: /sbin and /lib point into /usr, so the
        # package's /sbin/resolvconf and /lib/resolvconf appear there once
        # this layer is on top of /usr.
        tmp = tree / "usr-layer.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        shutil.copytree(tree / "sbin", tmp / "sbin", symlinks=True)
        shutil.copytree(tree / "lib", tmp / "lib", symlinks=True)
        try:
            tmp.rename(layer)
        except OSError:  # another session made it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    return Openresolv(tree)
