"""The package and the install script on this machine (issue 10), without
installing anything here: scripts/build-deb.sh builds the real .deb (its
venv from PyPI), whose contents, control data and unit are checked with
dpkg-deb and systemd-analyze; scripts/install.sh installs into a scratch
root (--root) and uninstalls again.  What the package does on a booted
system (dpkg -i, D-Bus activation, the hardened unit at work, dpkg -r) is
tests/sysvm, in the VM.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ACTIVATION = "usr/share/dbus-1/system-services/net.openvpn.v3.netcfg.service"
POLICY = "usr/share/dbus-1/system.d/net.openvpn.v3.netcfg.conf"


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    return Path(run("scripts/build-deb.sh", str(out)).stdout.strip().splitlines()[-1])


def contents(deb: Path) -> dict[str, str]:
    """path -> the dpkg-deb -c line (mode, owner, link target)."""
    lines = run("dpkg-deb", "-c", str(deb)).stdout.splitlines()
    return {line.split()[5].lstrip("./").rstrip("/"): line for line in lines if line.split()[5] != "./"}


def test_package_contents(deb):
    assert deb.name == "ovpn3-netcfg_0.1.0_amd64.deb"
    files = contents(deb)
    for path in (ACTIVATION, POLICY, "lib/systemd/system/netcfg.service", "etc/netcfg/netcfg.yaml",
                 "usr/share/doc/ovpn3-netcfg/README.md", "usr/share/doc/ovpn3-netcfg/copyright",
                 "usr/share/doc/ovpn3-netcfg/docs/troubleshooting.md", "opt/ovpn3-netcfg/bin/netcfg-service",
                 "opt/ovpn3-netcfg/pyvenv.cfg"):
        assert path in files, path
    for page in ("man8/netcfg-service.8.gz", "man8/netcfgctl.8.gz", "man5/netcfg.yaml.5.gz"):
        assert f"usr/share/man/{page}" in files, page  # scripts/build-man.sh's pages
    assert "usr/share/bash-completion/completions/netcfgctl" in files
    assert files["usr/sbin/netcfg-service"].endswith("-> /opt/ovpn3-netcfg/bin/netcfg-service")
    assert files["usr/bin/netcfgctl"].endswith("-> /opt/ovpn3-netcfg/bin/netcfgctl")
    assert files["opt/ovpn3-netcfg/bin/python3"].endswith("-> /usr/bin/python3")
    for module in ("systemd", "nftables"):
        assert files[f"opt/ovpn3-netcfg/debian-python/{module}"].endswith(f"-> /usr/lib/python3/dist-packages/{module}")
    assert files["var/lib/netcfg"].startswith("drwx------ root/root")
    assert all(" root/root " in line for line in files.values())
    # the venv holds netcfg and its pinned dependencies, byte-compiled
    site = [p for p in files if p.startswith("opt/ovpn3-netcfg/lib/python3.11/site-packages/")]
    for package in ("netcfg", "dbus_fast", "pyroute2", "yaml", "google/protobuf"):
        assert any(p.endswith(f"site-packages/{package}/__init__.py") for p in site), package
    assert any(p.endswith(".pyc") for p in site)
    assert not any("/pip/" in p for p in site)  # no pip in the installed venv


def test_package_control_and_scripts(deb):
    info = run("dpkg-deb", "-I", str(deb)).stdout
    assert "Package: ovpn3-netcfg" in info and "Depends: python3 (>= 3.11~), python3 (<< 3.12), python3-systemd" in info
    assert run("dpkg-deb", "-f", str(deb), "Architecture").stdout.strip() == run("dpkg", "--print-architecture").stdout.strip()
    control = run("dpkg-deb", "--ctrl-tarfile", str(deb))
    assert control.returncode == 0
    extract = Path(run("mktemp", "-d").stdout.strip())
    try:
        run("dpkg-deb", "-e", str(deb), str(extract))
        assert (extract / "conffiles").read_text() == "/etc/netcfg/netcfg.yaml\n"
        for script in ("preinst", "postrm"):
            text = (extract / script).read_text()
            assert f"/{ACTIVATION} /{POLICY}" in text and "@REPLACED@" not in text
            assert os.access(extract / script, os.X_OK)
            run("sh", "-n", str(extract / script))
        for script in ("postinst", "prerm"):
            run("sh", "-n", str(extract / script))
    finally:
        run("rm", "-rf", str(extract))


def test_unit_security_and_verify(deb):
    """systemd-analyze security --offline: <= 2.0; verify: clean (also in the VM)."""
    r = run("scripts/check-unit.sh", str(deb), check=False)
    assert r.returncode == 0, r.stderr
    assert "Overall exposure level for netcfg.service: 1.9 OK" in r.stderr


def tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = f"dir {path.stat().st_mode & 0o7777:o}"
    return out


def test_install_script_round_trip(tmp_path):
    """install.sh moves the OpenVPN 3 activation file aside, keeps an existing
    config, and --uninstall leaves the tree exactly as it found it."""
    root = tmp_path / "root"
    (root / "usr/share/dbus-1/system-services").mkdir(parents=True)
    (root / "etc/netcfg").mkdir(parents=True)
    (root / ACTIVATION).write_text("the OpenVPN 3 Linux package's\n")
    (root / "etc/netcfg/netcfg.yaml").write_text("log_level: 6\n")
    before = tree(root)

    run("scripts/install.sh", "--root", str(root))
    after = tree(root)
    assert (root / f"{ACTIVATION}.netcfg-displaced").read_text() == "the OpenVPN 3 Linux package's\n"
    assert "SystemdService=netcfg.service" in (root / ACTIVATION).read_text()
    assert (root / "etc/netcfg/netcfg.yaml").read_text() == "log_level: 6\n"  # the admin's, kept
    assert after["usr/sbin/netcfg-service"] == "-> /opt/ovpn3-netcfg/bin/netcfg-service"
    assert "etc/systemd/system/netcfg.service" in after and POLICY in after
    assert after["var/lib/netcfg"] == "dir 700"
    assert (root / "opt/ovpn3-netcfg/install.manifest").is_file()
    again = run("scripts/install.sh", "--root", str(root), check=False)
    assert again.returncode != 0 and "installed already" in again.stderr

    run("scripts/install.sh", "--uninstall", "--root", str(root))
    assert tree(root) == before
