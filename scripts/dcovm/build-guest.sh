#!/bin/bash
# build-guest.sh - build the dcovm guest root: Debian 12 (bookworm) minbase +
# two kernels, one per DCO family:
#   * Debian 12's kernel (6.1) + openvpn-dco-dkms: ovpn-dco-v2.ko, built by
#     DKMS for the *guest* kernel;
#   * the newest trixie-backports kernel >= 6.16 that installs on bookworm
#     by itself (today 6.17.13; 6.18+ need a newer linux-base): mainline
#     ovpn.ko, in-tree (CONFIG_OVPN=m); DCOVM_OVPN_KERNEL=RELEASE pins one;
# + what tests/dco needs inside (dbus-daemon, busctl, iproute2, useradd,
# openvpn 2.6, python3) + a venv /opt/venv with the project's dependencies
# (pyproject.toml: dependencies and the test extra) plus EXTRA_PY below;
# for the real-system test (tests/sysvm, scripts/sysvm-tests.sh): the .deb
# files of SYSVM_DEBS in /var/cache/sysvm-debs/PACKAGE/ and the first init
# /sbin/sysvm-init (an overlay root, then systemd as PID 1).
# The root's .dcovm-kernels lists "FAMILY RELEASE" per kernel, the 6.1 one
# first (the default).  Boot it with scripts/dcovm/run-in-vm.sh [-k FAMILY];
# normally scripts/dco-tests.sh calls both, once per kernel.
#
# Adapted from the known-working reference harness in
# shared/reference/dcovm/ (build-guest.sh, run-in-vm.sh); the differences:
# the root lives in the repo (.cache/dcovm/root), is built under ROOT.new
# and renamed only when complete, and carries a stamp (.dcovm-stamp) of what
# it was built from; the guest's PID 1 is scripts/dcovm/guest-init.
#
# usage: build-guest.sh [ROOTDIR]     build (default: REPO/.cache/dcovm/root);
#                                     an existing ROOTDIR is replaced at the end
#        build-guest.sh --stamp       print the stamp a root built now would carry
# env:   MIRROR   Debian mirror (default http://deb.debian.org/debian)
#        PYTHON   host Python >= 3.11 with pip, for reading pyproject.toml and
#                 downloading wheels (default REPO/.venv/bin/python, else python3)
#        DCOVM_OVPN_KERNEL  the backports kernel release to install, e.g.
#                 6.17.13+deb13-amd64 (default: the newest that fits, above)
# Needs root, debootstrap and network (Debian mirror, PyPI through the host's pip).
# The stamp is the sha256 of this script, guest-init, the Python
# requirements and DCOVM_OVPN_KERNEL: change any of them and
# scripts/dco-tests.sh rebuilds.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi

# Debian packages of the guest besides minbase, the kernel and DKMS.
GUEST_DEBS=(
  dbus dbus-daemon dbus-bin   # the private test bus (tests/support/busdaemon.py)
  systemd                     # busctl: ReloadConfig on the test bus
  iproute2 procps util-linux mount kmod
  passwd login                # useradd, /usr/sbin/nologin (tests/support/users.py)
  python3 python3-venv
  iputils-ping
  openvpn                     # 2.6 with DCO: interop
  python3-systemd             # the .deb's Depends (journald fields): tests/sysvm
)
# Debian packages the real-system test (tests/sysvm) installs with dpkg -i in
# the booted guest, downloaded here (the guest has no network), one folder
# per group: systemd-resolved and openresolv conflict (both provide
# resolvconf), the test swaps one for the other.
SYSVM_DEBS=(systemd-resolved openresolv)
# Python packages of the guest venv besides pyproject.toml's.
EXTRA_PY=("protobuf>=4")

py_requirements() {  # pyproject.toml's dependencies and test extra, then EXTRA_PY
  "$PYTHON" - "$REPO/pyproject.toml" <<'PY'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(p.get("dependencies", []) + p.get("optional-dependencies", {}).get("test", [])))
PY
  printf '%s\n' "${EXTRA_PY[@]}"
}

stamp() {
  { cat "$HERE/build-guest.sh" "$HERE/guest-init" "$HERE/sysvm-init"; py_requirements; echo "${DCOVM_OVPN_KERNEL:-}"; } |
    sha256sum | cut -d' ' -f1
}

if [ "${1:-}" = "--stamp" ]; then stamp; exit 0; fi
case "${1:-}" in -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0;; esac

die() { echo "build-guest: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap)"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip (set PYTHON=)"

ROOT=$(realpath -m "${1:-$REPO/.cache/dcovm/root}")
NEW=$ROOT.new
STAMP=$(stamp)
mapfile -t PY_REQS < <(py_requirements)
export DEBIAN_FRONTEND=noninteractive
APT="apt-get -o DPkg::Lock::Timeout=900 -y -q --no-install-recommends"
t() { local s=$SECONDS; "$@"; echo "### $(printf '%-12s' "$STAGE") $((SECONDS-s)) s" >&2; }

# Mounts under $NEW (this build's, or those a killed build left behind) go
# before any rm, which must not reach into them.
unmount_under() {
  local m
  findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1' | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}
# Processes chrooted into $NEW (e.g. apt when only this script was killed).
kill_chrooted() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$1" ] && kill -KILL "${p#/proc/}" 2>/dev/null
  done
  return 0
}
cleanup() { kill_chrooted "$NEW"; unmount_under "$NEW"; }
trap 'cleanup; rm -rf --one-file-system "$NEW"' EXIT   # a failed build leaves nothing
cleanup
rm -rf --one-file-system "$NEW"
mkdir -p "$(dirname "$ROOT")"

STAGE=debootstrap t debootstrap --variant=minbase bookworm "$NEW" "$MIRROR" >/dev/null
cat > "$NEW/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
printf '#!/bin/sh\nexit 101\n' > "$NEW/usr/sbin/policy-rc.d"; chmod +x "$NEW/usr/sbin/policy-rc.d"
echo dcovm > "$NEW/etc/hostname"
# small initramfs (~6 MB instead of ~35 MB): only what a 9p root (and -n) needs
mkdir -p "$NEW/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=gzip\n' > "$NEW/etc/initramfs-tools/conf.d/dcovm.conf"
printf '%s\n' virtio_pci virtio_net 9p 9pnet_virtio > "$NEW/etc/initramfs-tools/modules"
install -m 755 "$HERE/guest-init" "$NEW/sbin/dcovm-init"
install -m 755 "$HERE/sysvm-init" "$NEW/sbin/sysvm-init"

# chroot commands get a clean environment (no host PIP_*/SSL_* settings)
chroot() { command env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
           DEBIAN_FRONTEND=noninteractive chroot "$@"; }
# Never the host's /dev: package scripts (udev's systemd-tmpfiles run) would
# chmod/chgrp the host's /dev/net/tun, /dev/kvm... to the guest's groups.
# The guest's /dev keeps debootstrap's static nodes (null, zero, tty, ptmx...)
# plus a devpts instance of its own; /sys is read-only.
mount -t proc proc "$NEW/proc"
mount -t sysfs -o ro sys "$NEW/sys"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$NEW/dev/pts"

STAGE=guest-apt t chroot "$NEW" bash -c "apt-get update -q >/dev/null && $APT install \
  linux-image-amd64 linux-headers-amd64 ${GUEST_DEBS[*]} >/dev/null"
KVER=$(ls "$NEW/lib/modules" | sort -V | tail -1)
# openvpn-dco-dkms builds the module for every kernel whose headers are
# installed (not for the running host kernel, which DKMS sees as the chroot's)
STAGE=dkms t chroot "$NEW" $APT install openvpn-dco-dkms >/dev/null
if ! chroot "$NEW" modinfo -k "$KVER" ovpn-dco-v2 >/dev/null 2>&1; then
  STAGE=dkms-again t chroot "$NEW" dkms autoinstall -k "$KVER"
fi
chroot "$NEW" modinfo -k "$KVER" -F vermagic ovpn-dco-v2 >/dev/null \
  || die "ovpn-dco-v2 was not built for $KVER"

# The mainline kernel, from trixie-backports (its source is in the chroot's
# apt only for this step).  Candidates: linux-image-X.Y.Z+debNN-amd64 with
# X.Y >= 6.16, newest first; taken: the first whose installation needs no
# package but its own (linux-image/-binary/-modules/-base-RELEASE): newer
# ones want a linux-base newer than bookworm's.  Its postinst hooks build
# its initramfs (the same MODULES=list) and skip DKMS (no headers), so
# ovpn-dco-v2 stays on the 6.1 kernel only.
ovpn_kernel() {
  local bpo=/etc/apt/sources.list.d/dcovm-trixie-backports.list p rel inst skipped=()
  echo "deb $MIRROR trixie-backports main" > "$NEW$bpo"
  chroot "$NEW" apt-get update -q >/dev/null
  if [ -n "${DCOVM_OVPN_KERNEL:-}" ]; then
    set -- "linux-image-$DCOVM_OVPN_KERNEL"
  else
    set -- $(chroot "$NEW" apt-cache pkgnames linux-image- |
      grep -E '^linux-image-[0-9]+\.[0-9]+\.[0-9]+\+deb[0-9]+-amd64$' | sort -rV |
      awk -F'[-.]' '$3 > 6 || ($3 == 6 && $4 >= 16)')
  fi
  OVPN_KVER=""
  for p in "$@"; do
    rel=${p#linux-image-}
    inst=$(chroot "$NEW" apt-get -s -q --no-install-recommends install "$p" 2>/dev/null | awk '/^Inst /{print $2}') \
      || inst=""
    if [ -n "$inst" ] && ! grep -qv -e "-$rel\$" <<<"$inst"; then OVPN_KVER=$rel; break; fi
    skipped+=("$rel")
  done
  (( ${#skipped[@]} == 0 )) || echo "build-guest: ${#skipped[@]} newer backports kernels do not install by" \
    "themselves on bookworm (${skipped[0]} ... ${skipped[-1]}): skipped" >&2
  [ -n "$OVPN_KVER" ] || die "no trixie-backports kernel >= 6.16 (mainline ovpn) installs here (${DCOVM_OVPN_KERNEL:+DCOVM_OVPN_KERNEL=$DCOVM_OVPN_KERNEL; }candidates: ${*:-none})"
  chroot "$NEW" $APT install "linux-image-$OVPN_KVER" >/dev/null
  rm -f "$NEW$bpo"
  chroot "$NEW" modinfo -k "$OVPN_KVER" -F intree ovpn >/dev/null || die "$OVPN_KVER has no ovpn module"
  ! chroot "$NEW" modinfo -k "$OVPN_KVER" ovpn-dco-v2 >/dev/null 2>&1 \
    || die "ovpn-dco-v2 was built for $OVPN_KVER too (its tests would not reach mainline ovpn)"
  [ -s "$NEW/boot/initrd.img-$OVPN_KVER" ] || die "no initramfs for $OVPN_KVER"
  echo "build-guest: mainline ovpn kernel: $OVPN_KVER" >&2
}
STAGE=ovpn-kernel t ovpn_kernel
# .deb files only, with whatever of their dependencies the root lacks
sysvm_debs() {
  local p d
  for p in "${SYSVM_DEBS[@]}"; do
    d=/var/cache/sysvm-debs/$p
    mkdir -p "$NEW$d/partial"
    chroot "$NEW" $APT -o Dir::Cache::archives="$d" --download-only install "$p" >/dev/null
    rm -rf "$NEW$d/partial" "$NEW$d/lock"
    ls "$NEW$d"/"$p"_*.deb >/dev/null || die "no $p .deb downloaded"
  done
}
STAGE=sysvm-debs t sysvm_debs
chroot "$NEW" dbus-uuidgen --ensure=/etc/machine-id

# Python packages: wheels for the guest's interpreter are downloaded on the
# host (the chroot lacks the host's TLS/proxy setup) and installed offline.
venv() {
  local pyver plat=()
  pyver=$(chroot "$NEW" python3 -c 'import sys; print("%d%d" % sys.version_info[:2])')
  for p in manylinux_2_36 manylinux_2_28 manylinux_2_17 manylinux2014; do plat+=(--platform "${p}_x86_64"); done
  "$PYTHON" -m pip download -q -d "$NEW/tmp/wheels" --only-binary=:all: \
    --python-version "$pyver" --implementation cp --abi "cp$pyver" "${plat[@]}" \
    "${PY_REQS[@]}" 2> >(grep -v "is ignored" >&2)   # this machine's pip.conf names absent local indexes
  chroot "$NEW" python3 -m venv /opt/venv
  chroot "$NEW" /opt/venv/bin/pip install -q --disable-pip-version-check --no-index \
    --find-links /tmp/wheels "${PY_REQS[@]}"
  rm -rf "$NEW/tmp/wheels"
  # the checkout, shared at /mnt/work, is importable whatever the environment
  echo /mnt/work > "$(echo "$NEW"/opt/venv/lib/python3*/site-packages)/netcfg-checkout.pth"
  # test processes running as other users use this interpreter and packages
  chmod -R a+rX "$NEW/opt/venv"
}
STAGE=venv t venv
chroot "$NEW" apt-get clean
rm -rf "$NEW"/var/lib/apt/lists/* "$NEW"/usr/share/doc "$NEW"/usr/share/man "$NEW"/usr/share/locale
cleanup

printf 'ovpn-dco-v2 %s\novpn %s\n' "$KVER" "$OVPN_KVER" > "$NEW/.dcovm-kernels"
printf '%s\n# built %s; kernels %s, %s; from scripts/dcovm/build-guest.sh\n' \
  "$STAMP" "$(date -u +%FT%TZ)" "$KVER" "$OVPN_KVER" > "$NEW/.dcovm-stamp"
# only now does the root count: replace the old one
if [ -e "$ROOT" ]; then
  mv "$ROOT" "$ROOT.old.$$"
  rm -rf --one-file-system "$ROOT.old.$$"
fi
mv "$NEW" "$ROOT"
trap - EXIT
echo "build-guest: guest root ready: $ROOT (kernels $KVER and $OVPN_KVER, $(du -sh "$ROOT" | cut -f1))" >&2
