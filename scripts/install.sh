#!/usr/bin/env bash
# Install netcfg without a package manager: `sudo scripts/install.sh`, and
# remove it again: `sudo scripts/install.sh --uninstall`.
#
# Lays out the same files as the Debian package (scripts/packaging/layout.sh:
# the private venv /opt/ovpn3-netcfg, the commands in /usr/sbin and /usr/bin,
# the D-Bus policy and activation file, /etc/netcfg/netcfg.yaml, the docs, the
# man pages, /var/lib/netcfg), except that the unit goes to
# /etc/systemd/system/netcfg.service.  A file already at one of those paths
# (above all the OpenVPN 3 Linux package's activation file and policy) is
# moved aside to PATH.netcfg-displaced, which the bus ignores.  Every path
# created and every file moved aside is listed in
# /opt/ovpn3-netcfg/install.manifest; --uninstall stops the service (it
# tears its devices down), removes exactly those paths and moves the
# displaced files back.  An existing /etc/netcfg/netcfg.yaml is kept; ours
# is removed at uninstall only if unchanged.
#
# usage: install.sh [--uninstall] [--root DIR]
#   --root DIR   install into (or remove from) DIR as if it were /: no
#                service is stopped and nothing is reloaded (tests use it)
# Needs root, Python >= 3.11 (PKG_PYTHON, default /usr/bin/python3), the
# repo's .venv for pip (scripts/setup.sh makes it) and PyPI.  Refuses to run
# where the ovpn3-netcfg package is installed.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "$1"; }
# shellcheck source=packaging/layout.sh
source "$REPO/scripts/packaging/layout.sh"

ROOT=/ UNINSTALL=0
while (( $# )); do
  case $1 in
    --uninstall) UNINSTALL=1 ;;
    --root) ROOT=$(realpath -m "$2"); shift ;;
    -h|--help) usage 0 ;;
    *) usage 2 ;;
  esac
  shift
done
R=${ROOT%/}  # prefix for every absolute path ("" for /)
MANIFEST=$PREFIX/install.manifest
UNIT_DIR=/etc/systemd/system
DISPLACED_SUFFIX=.netcfg-displaced
say() { echo "install.sh: $*" >&2; }

[[ $(id -u) == 0 ]] || layout_die "needs root: sudo $0 $*"
if [[ $ROOT == / ]] && command -v dpkg-query >/dev/null \
    && [[ $(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null) == "install ok installed" ]]; then
  layout_die "the $PKG package is installed; remove it with: apt remove $PKG"
fi

reload_system() {  # systemd and the bus see what changed
  [[ $ROOT == / ]] || return 0
  if [[ -d /run/systemd/system ]]; then systemctl daemon-reload || true; fi
  if [[ -S /run/dbus/system_bus_socket ]] && command -v busctl >/dev/null; then
    busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null 2>&1 || true
  fi
}

install_tree() {  # copy the staged tree $1 into $ROOT, writing the manifest
  local stage=$1 rel path manifest
  manifest=$(mktemp)
  while IFS= read -r rel; do
    path=/${rel#./}
    [[ $path == "$PREFIX" || $path == "$PREFIX"/* ]] && continue  # the venv: copied whole below
    if [[ -d $stage$path && ! -L $stage$path ]]; then
      if [[ ! -d $R$path ]]; then
        mkdir -p "$R$path"
        chmod --reference="$stage$path" "$R$path"
        echo "dir $path" >> "$manifest"
      fi
      continue
    fi
    if [[ $path == "$CONFIG" ]]; then
      if [[ -e $R$path ]]; then say "keeping the existing $path"; continue; fi
      cp -a "$stage$path" "$R$path"
      echo "config $path $(sha256sum < "$R$path" | cut -d' ' -f1)" >> "$manifest"
      continue
    fi
    if [[ -e $R$path || -L $R$path ]]; then
      mv "$R$path" "$R$path$DISPLACED_SUFFIX"
      echo "displaced $path" >> "$manifest"
      say "moved the existing $path aside to $path$DISPLACED_SUFFIX"
    fi
    cp -a "$stage$path" "$R$path"
    echo "file $path" >> "$manifest"
  done < <(cd "$stage" && find . -mindepth 1 | sort)
  cp -a "$stage$PREFIX" "$R$PREFIX"
  echo "tree $PREFIX" >> "$manifest"  # last: the first to go at uninstall
  cp "$manifest" "$R$MANIFEST"
  rm -f "$manifest"
}

do_install() {
  [[ ! -e $R$PREFIX ]] || layout_die "$R$PREFIX exists: netcfg is installed already (--uninstall first)"
  STAGE=$(mktemp -d "${TMPDIR:-/tmp}/$PKG-install.XXXXXX")
  trap 'rm -rf "$STAGE"' EXIT
  chmod 755 "$STAGE"
  local stage=$STAGE
  say "building the venv $PREFIX (pip, PyPI)"
  stage_venv "$stage"
  # the system's systemd and nftables bindings, where its python3 has them
  local dist
  dist=$("$PKG_PYTHON" -c 'import os, systemd.journal as j; print(os.path.dirname(os.path.dirname(j.__file__)))' \
         2>/dev/null) || { dist=""; say "no python3-systemd binding: journal lines get '<N>' prefixes instead of fields"; }
  [[ -z $dist ]] || stage_debian_python "$stage" "$dist"
  stage_files "$stage" "$UNIT_DIR"
  install_tree "$stage"
  reload_system
  say "installed into ${ROOT}; the bus starts netcfg.service on the first call (list: $MANIFEST)"
}

do_uninstall() {
  [[ -f $R$MANIFEST ]] || layout_die "no $R$MANIFEST: netcfg was not installed by this script"
  if [[ $ROOT == / ]]; then
    sh "$REPO/packaging/debian/prerm" remove  # stop it: it tears its devices down
  fi
  local kind path sum line lines
  mapfile -t lines < <(tac "$R$MANIFEST")
  for line in "${lines[@]}"; do
    read -r kind path sum <<<"$line"
    case $kind in
      file) rm -f "$R$path" ;;
      config)
        if [[ -f $R$path && $(sha256sum < "$R$path" | cut -d' ' -f1) != "$sum" ]]; then
          say "keeping $path: it was changed since the installation"
        else
          rm -f "$R$path"
        fi ;;
      dir) rmdir "$R$path" 2>/dev/null || say "keeping $path: not empty" ;;
      displaced)
        if [[ -e $R$path || -L $R$path ]]; then  # reinstalled since by its package: that one is newer
          say "keeping the newer $path; removing the older $path$DISPLACED_SUFFIX"
          rm -f "$R$path$DISPLACED_SUFFIX"
        else
          mv "$R$path$DISPLACED_SUFFIX" "$R$path"
          say "restored $path"
        fi ;;
      tree) rm -rf "${R:?}$path" ;;  # the venv (and this manifest)
      *) layout_die "bad line in $MANIFEST: $kind $path" ;;
    esac
  done
  reload_system
  say "uninstalled from $ROOT"
}

if (( UNINSTALL )); then do_uninstall; else do_install; fi
