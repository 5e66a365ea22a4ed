#!/bin/bash
# run-in-vm.sh - run one shell command inside a throw-away QEMU guest with a
# real DCO kernel module, openvpn 2.6 (DCO) and /opt/venv.  The guest root
# (scripts/dcovm/build-guest.sh) has two kernels, listed in its
# .dcovm-kernels ("FAMILY RELEASE" per line, the first is the default):
#   ovpn-dco-v2  Debian 12's kernel 6.1 + openvpn-dco-dkms (the default)
#   ovpn         a 6.16+ trixie-backports kernel with mainline ovpn.ko
# Adapted from the reference harness in shared/reference/dcovm/run-in-vm.sh.
#
# usage: run-in-vm.sh [-k KERNEL] [-w HOSTDIR] [-i INIT] [-n] [-m MiB] [-s CPUS] [-t SECS] [--] 'shell command'
#   -k KERNEL   the kernel to boot: a family of .dcovm-kernels (ovpn-dco-v2, ovpn) or
#               a release or its prefix (6.1, 6.17, 6.17.13+deb13-amd64); default
#               $DCOVM_KERNEL, else the first line of .dcovm-kernels
#   -w HOSTDIR  share HOSTDIR read-write at /mnt/work (the command's cwd), e.g. a checkout
#   -i INIT     the guest's first process (default /sbin/dcovm-init; /sbin/sysvm-init
#               boots systemd, scripts/sysvm-tests.sh); the command's markers and
#               exit code travel the same way with either
#   -n          qemu user-mode networking (guest 10.0.2.15, gw 10.0.2.2, dns 10.0.2.3)
#   -m MiB      guest memory (default 1024)     -s CPUS  vCPUs (default 1; 2 only helps when alone)
#   -t SECS     kill the guest after SECS seconds (default 600) -> exit 124
# Prints the command's stdout+stderr (guest serial console) and exits with the
# command's exit code; 125 if the guest never reported one (then the console
# tail is shown), 124 on timeout, 126 if qemu or the guest root is missing.
# In the guest: root (the command runs as root), PATH starts with /opt/venv/bin,
# PYTHONPATH=/mnt/work, NETCFG_DCOVM=1; /, except tmpfs /tmp /run /etc..., is read-only.
# env: DCOVM_ROOT   guest root folder (default REPO/.cache/dcovm/root), shared read-only over 9p
#      DCOVM_ACCEL  qemu accelerator (default tcg,thread=multi: this machine's KVM
#                   cannot run Debian's kernel)
#      DCOVM_LOG    keep the full console log in this file
#      DCOVM_KARGS  extra kernel args (default "quiet loglevel=3")
set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROOT=${DCOVM_ROOT:-$REPO/.cache/dcovm/root}
ACCEL=${DCOVM_ACCEL:-tcg,thread=multi}
WORK="" NET=0 MEM=1024 SMP=1 TMO=600 KERNEL=${DCOVM_KERNEL:-} INIT=/sbin/dcovm-init
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "$1"; }
while getopts "k:w:i:nm:s:t:h" o; do
  case $o in k) KERNEL=$OPTARG;; w) WORK=$(realpath "$OPTARG");; i) INIT=$OPTARG;; n) NET=1;; m) MEM=$OPTARG;;
             s) SMP=$OPTARG;; t) TMO=$OPTARG;; h) usage 0;; *) usage 2;; esac
done
shift $((OPTIND-1)); [ "${1:-}" = "--" ] && shift
[ $# -ge 1 ] || usage 2
command -v qemu-system-x86_64 >/dev/null \
  || { echo "run-in-vm: qemu-system-x86_64 missing (apt-get install qemu-system-x86)" >&2; exit 126; }
[ -f "$ROOT/.dcovm-stamp" ] \
  || { echo "run-in-vm: no complete guest root at $ROOT (scripts/dcovm/build-guest.sh)" >&2; exit 126; }
[ -s "$ROOT/.dcovm-kernels" ] \
  || { echo "run-in-vm: $ROOT has no .dcovm-kernels (an older build: rebuild it)" >&2; exit 126; }
# -k: a family name, else a release prefix ending at a '.', '-' or '+'
KVER=$(awk -v k="$KERNEL" 'k == "" { print $2; exit } $1 == k { print $2; exit }
  index($2, k) == 1 && (length($2) == length(k) || substr($2, length(k) + 1, 1) ~ /[.+-]/) { print $2; exit }' \
  "$ROOT/.dcovm-kernels")
if [ -z "$KVER" ] || [ ! -f "$ROOT/boot/vmlinuz-$KVER" ]; then
  echo "run-in-vm: no kernel '${KERNEL}' in $ROOT; it has:" >&2; cat "$ROOT/.dcovm-kernels" >&2; exit 126
fi
CTL=$(mktemp -d "${TMPDIR:-/tmp}/dcovm-ctl.XXXXXX")
trap 'rm -rf "$CTL"' EXIT
printf '%s\n' "$*" > "$CTL/cmd.sh"
LOG=${DCOVM_LOG:-$CTL/console.log}

# root = the folder itself over 9p, read-only, cached
ROOTARGS="root=rootfs rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose"
args=(-accel "$ACCEL" -cpu max -smp "$SMP" -m "$MEM" -machine q35
  -display none -no-reboot -monitor none -serial stdio
  -kernel "$ROOT/boot/vmlinuz-$KVER" -initrd "$ROOT/boot/initrd.img-$KVER"
  -append "console=ttyS0 $ROOTARGS ro init=$INIT panic=-1 ${DCOVM_KARGS:-quiet loglevel=3}"
  -fsdev local,id=rootfs,path="$ROOT",security_model=passthrough,readonly=on
  -device virtio-9p-pci,fsdev=rootfs,mount_tag=rootfs
  -fsdev local,id=ctl,path="$CTL",security_model=none
  -device virtio-9p-pci,fsdev=ctl,mount_tag=ctl)
[ -n "$WORK" ] && args+=(-fsdev local,id=work,path="$WORK",security_model=passthrough
  -device virtio-9p-pci,fsdev=work,mount_tag=work)
if [ "$NET" = 1 ]; then args+=(-nic user,model=virtio-net-pci); else args+=(-nic none); fi

# stream only the command's part of the console; keep everything in $LOG
timeout -k 5 "$TMO" qemu-system-x86_64 "${args[@]}" </dev/null 2>&1 | tr -d '\r' | tee "$LOG" |
  awk '/^DCOVM_EXIT_CODE=/{on=0} on{print; fflush()} /^DCOVM_BEGIN$/{on=1}'
qrc=${PIPESTATUS[0]}
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then echo "run-in-vm: timeout after ${TMO}s" >&2; exit 124; fi
[ -s "$CTL/rc" ] && exit "$(cat "$CTL/rc")"
echo "run-in-vm: guest did not report an exit code (qemu rc=$qrc); console tail:" >&2
tail -n 40 "$LOG" >&2
exit 125
