#!/usr/bin/env bash
# Build the Debian package of netcfg: `sudo scripts/build-deb.sh [OUTDIR]`
# writes OUTDIR/ovpn3-netcfg_VERSION_ARCH.deb (default OUTDIR: dist/) and
# prints its path on the last line.
#
# The package bundles a private virtualenv at /opt/ovpn3-netcfg, made with
# Debian 12's python3 (3.11) and holding netcfg with the dependencies
# pyproject.toml pins (Debian 12's python3-dbus-fast, pyroute2 and protobuf
# are too old), and installs the policy, the activation file, the hardened
# unit, /etc/netcfg/netcfg.yaml, the docs and (once scripts/build-man.sh
# exists) the man pages; the whole layout is in scripts/packaging/layout.sh.
# Its maintainer scripts are packaging/debian/{preinst,postinst,prerm,postrm}.
#
# Needs root (the venv is built at its real path in a private mount
# namespace), dpkg-deb, Debian's python3 >= 3.11 (PKG_PYTHON, default
# /usr/bin/python3), the repo's .venv for pip (scripts/setup.sh makes it) and
# PyPI (pip fetches the dependencies' wheels).  ~30 s.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0;; esac
# shellcheck source=packaging/layout.sh
source "$REPO/scripts/packaging/layout.sh"
OUT=$(realpath -m "${1:-$REPO/dist}")

[[ $(id -u) == 0 ]] || layout_die "needs root (a private mount namespace for the venv): sudo $0 $*"
command -v dpkg-deb >/dev/null || layout_die "dpkg-deb missing (Debian's dpkg package)"
[[ -x $REPO/.venv/bin/python ]] || "$REPO/scripts/setup.sh"

VERSION=$(project_version)
ARCH=$(dpkg --print-architecture)  # the venv holds compiled wheels
PYVER=$("$PKG_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYNEXT=$("$PKG_PYTHON" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/$PKG-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
chmod 755 "$STAGE"

stage_venv "$STAGE"
stage_debian_python "$STAGE" "$DEBIAN_DIST_PACKAGES"
stage_files "$STAGE" /lib/systemd/system

mkdir -m 755 "$STAGE/DEBIAN"
for script in preinst postinst prerm postrm; do
  sed "s|@REPLACED@|${REPLACED[*]}|" "$REPO/packaging/debian/$script" > "$STAGE/DEBIAN/$script"
  chmod 755 "$STAGE/DEBIAN/$script"
done
echo "$CONFIG" > "$STAGE/DEBIAN/conffiles"
cat > "$STAGE/DEBIAN/control" <<EOF
Package: $PKG
Version: $VERSION
Architecture: $ARCH
Maintainer: netcfg developers <root@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
Depends: python3 (>= $PYVER~), python3 (<< $PYNEXT), python3-systemd, dbus-system-bus | default-dbus-system-bus
Recommends: python3-nftables
Suggests: systemd-resolved | openresolv
Section: net
Priority: optional
Description: OpenVPN 3 Linux network-configuration D-Bus service, in Python
 netcfg is a drop-in for openvpn3-service-netcfg: the D-Bus system service
 net.openvpn.v3.netcfg that lets unprivileged OpenVPN 3 backends create tun
 and data-channel-offload devices, set addresses, routes and DNS, keep their
 transport socket out of the tunnel, and that cleans up after them.
 .
 Its activation file and D-Bus policy take the place of the OpenVPN 3 Linux
 package's (dpkg-divert); removing this package gives those back.  The
 service runs as the hardened netcfg.service; its Python dependencies are
 bundled in /opt/$PKG.
EOF
mkdir -p "$OUT"
deb="$OUT/${PKG}_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$deb" >/dev/null
echo "$deb"
