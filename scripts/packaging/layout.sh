# Shared by scripts/build-deb.sh and scripts/install.sh (sourced, not run):
# where every installed file of ovpn3-netcfg goes, and how the private
# virtualenv is built.  Both lay the same tree out under a DEST folder (a
# package's staging folder, or / itself):
#
#   /opt/ovpn3-netcfg/                  the private venv (Debian's python3),
#                                       netcfg and its pinned dependencies
#   /opt/ovpn3-netcfg/debian-python/    links to the few Debian Python modules
#                                       the venv may import (DEBIAN_PY_MODULES)
#   /usr/sbin/netcfg-service            -> /opt/ovpn3-netcfg/bin/netcfg-service
#   /usr/bin/<every other [project.scripts] entry>  -> /opt/ovpn3-netcfg/bin/
#   /usr/share/dbus-1/system.d/net.openvpn.v3.netcfg.conf          policy
#   /usr/share/dbus-1/system-services/net.openvpn.v3.netcfg.service activation
#   $UNIT_DIR/netcfg.service            the hardened unit
#   /etc/netcfg/netcfg.yaml             commented defaults (config/netcfg.yaml; a conffile)
#   /usr/share/bash-completion/completions/netcfgctl
#   /usr/share/doc/ovpn3-netcfg/        README.md, docs/, copyright
#   /usr/share/man/man{5,8}/            what scripts/build-man.sh renders, if it exists
#   /var/lib/netcfg/                    the state directory (0700)

PKG=ovpn3-netcfg
PREFIX=/opt/$PKG
STATE_DIR=/var/lib/netcfg
CONFIG=/etc/netcfg/netcfg.yaml
COMPLETION=/usr/share/bash-completion/completions/netcfgctl
POLICY=/usr/share/dbus-1/system.d/net.openvpn.v3.netcfg.conf
ACTIVATION=/usr/share/dbus-1/system-services/net.openvpn.v3.netcfg.service
# Files of the OpenVPN 3 Linux package that ours replace (dpkg-divert, or
# install.sh's move aside): same names, same places.
REPLACED=("$ACTIVATION" "$POLICY")
# Debian Python modules the bundled venv sees (see stage_debian_python): to
# add one, name it here and its package in scripts/build-deb.sh's control.
# systemd: python3-systemd (journald fields; Depends); nftables:
# python3-nftables (leak protection, netcfg/kernel/libnft.py; Recommends).
DEBIAN_PY_MODULES=(systemd nftables)
DEBIAN_DIST_PACKAGES=/usr/lib/python3/dist-packages
# Debian 12's python3; the venv links to it and the wheels are built for it
PKG_PYTHON=${PKG_PYTHON:-/usr/bin/python3}

layout_die() { echo "${0##*/}: $*" >&2; exit 1; }

# name=module:function for every [project.scripts] entry of pyproject.toml
project_scripts() {
  "$PKG_PYTHON" - "$REPO/pyproject.toml" <<'PY'
import sys, tomllib
for name in tomllib.load(open(sys.argv[1], "rb"))["project"].get("scripts", {}):
    print(name)
PY
}

project_version() {
  "$PKG_PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$REPO/pyproject.toml"
}

# the /usr path of a command's link: the service in sbin, the rest in bin
command_link() { if [[ $1 == netcfg-service ]]; then echo "/usr/sbin/$1"; else echo "/usr/bin/$1"; fi; }

# stage_venv DEST: the venv at $PREFIX, built where it will run (under DEST
# only through a private bind mount, so its paths and shebangs are right).
stage_venv() {
  local dest=$1 pip_py=${BUILD_PIP_PYTHON:-$REPO/.venv/bin/python}
  "$PKG_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || layout_die "$PKG_PYTHON is older than Python 3.11"
  "$pip_py" -m pip --version >/dev/null 2>&1 || layout_die "$pip_py has no pip (run scripts/setup.sh)"
  mkdir -p "$dest$PREFIX"
  local build="set -e
    $PKG_PYTHON -m venv --without-pip $PREFIX
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
      $pip_py -m pip --python $PREFIX/bin/python install -q --no-compile --no-warn-script-location $REPO
    $PREFIX/bin/python -m compileall -q -j0 --invalidation-mode unchecked-hash $PREFIX/lib >/dev/null"
  # (this machine's pip.conf may name local indexes that do not exist: noise)
  if [[ $dest == / ]]; then
    bash -c "$build" 2> >(grep -v "is ignored: it is" >&2)
  else
    # /opt is a tmpfs in this mount namespace only: the host's /opt stays untouched
    unshare --mount --propagation private bash -c "set -e
      mount -t tmpfs -o mode=755 $PKG-build /opt
      mkdir $PREFIX
      mount --bind '$dest$PREFIX' $PREFIX
      $build" 2> >(grep -v "is ignored: it is" >&2)
  fi
  rm -rf "$dest$PREFIX/bin/Activate.ps1"
  # pip's in-tree build leaves these in the checkout
  rm -rf "$REPO/build" "$REPO"/*.egg-info
}

# stage_debian_python DEST DIST_PACKAGES: links in $PREFIX/debian-python to
# DEBIAN_PY_MODULES in DIST_PACKAGES and a .pth naming that folder, so the
# venv can import those modules (and nothing else of the system's: the folder
# goes last on sys.path, after the venv's own packages).  A module absent
# from DIST_PACKAGES is skipped (the service works without: log.py falls
# back to '<N>' prefixes without the systemd binding).
stage_debian_python() {
  local dest=$1 dist=$2 m site
  mkdir -p "$dest$PREFIX/debian-python"
  for m in "${DEBIAN_PY_MODULES[@]}"; do
    ln -sfn "$dist/$m" "$dest$PREFIX/debian-python/$m"
  done
  site=$(cd "$dest$PREFIX" && echo lib/python3*/site-packages)
  [[ -d $dest$PREFIX/$site ]] || layout_die "no site-packages in $dest$PREFIX"
  echo "$PREFIX/debian-python" > "$dest$PREFIX/$site/$PKG-debian-python.pth"
}

# stage_files DEST UNIT_DIR: everything but the venv
stage_files() {
  local dest=$1 unit_dir=$2 name page man
  install -D -m 644 "$REPO/dbus-policy/net.openvpn.v3.netcfg.conf" "$dest$POLICY"
  install -D -m 644 "$REPO/systemd/net.openvpn.v3.netcfg.service" "$dest$ACTIVATION"
  install -D -m 644 "$REPO/systemd/netcfg.service" "$dest$unit_dir/netcfg.service"
  install -D -m 644 "$REPO/config/netcfg.yaml" "$dest$CONFIG"
  install -D -m 644 "$REPO/completion/netcfgctl.bash" "$dest$COMPLETION"
  install -d -m 700 "$dest$STATE_DIR"
  for name in $(project_scripts); do
    install -d "$dest$(dirname "$(command_link "$name")")"
    ln -sfn "$PREFIX/bin/$name" "$dest$(command_link "$name")"
  done
  local doc=$dest/usr/share/doc/$PKG
  install -D -m 644 "$REPO/README.md" "$doc/README.md"
  install -d "$doc/docs"
  install -m 644 "$REPO"/docs/*.md "$doc/docs/"
  install -m 644 "$REPO/packaging/copyright" "$doc/copyright"
  # man pages: scripts/build-man.sh OUTDIR renders them (issue 12); none until it exists
  if [[ -x $REPO/scripts/build-man.sh ]]; then
    man=$(mktemp -d)
    "$REPO/scripts/build-man.sh" "$man" || layout_die "scripts/build-man.sh failed"
    for page in "$man"/*.[1-8]; do
      [[ -e $page ]] || continue
      install -D -m 644 "$page" "$dest/usr/share/man/man${page##*.}/${page##*/}"
      gzip -9nf "$dest/usr/share/man/man${page##*.}/${page##*/}"
    done
    rm -rf "$man"
  fi
}
