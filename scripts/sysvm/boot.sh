#!/bin/bash
# Stage two of the real-system test guest's start, run as PID 1 by
# /sbin/sysvm-init (scripts/dcovm/sysvm-init) with the overlay root mounted
# at $1 and the host shares at $1/mnt/ctl and $1/mnt/work.  Lives in the
# checkout, not in the cached guest root, so changing it needs no rebuild.
#
# Adds the unit that runs the test command (run-command.sh) once the system
# is up, lets package scripts start services (the image forbids it while it
# is built: policy-rc.d), then pivot_roots into the overlay and execs
# systemd as PID 1.
set -u
NEW=$1
fail() { echo "sysvm boot: $*"; echo "DCOVM_EXIT_CODE=125"; echo o > /proc/sysrq-trigger; sleep 30; }
cat > "$NEW/etc/systemd/system/sysvm-test.service" <<'UNIT'
[Unit]
Description=netcfg real-system test command (scripts/sysvm/run-command.sh)
After=multi-user.target
[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
WorkingDirectory=/mnt/work
Environment=HOME=/root LANG=C.UTF-8 TERM=dumb
ExecStart=/bin/bash /mnt/work/scripts/sysvm/run-command.sh
UNIT
mkdir -p "$NEW/etc/systemd/system/multi-user.target.wants"
ln -sf ../sysvm-test.service "$NEW/etc/systemd/system/multi-user.target.wants/sysvm-test.service"
rm -f "$NEW/usr/sbin/policy-rc.d"
# The bus gives an activated service 25 s to own its name.  On the emulated
# CPU, with other guests busy on the same cores, the service once took
# longer than that (it takes 3-8 s when the host is quiet): the limit is
# raised here, as an admin would in system-local.conf; activation itself is
# unchanged.
cat > "$NEW/etc/dbus-1/system-local.conf" <<'CONF'
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <limit name="service_start_timeout">180000</limit>
</busconfig>
CONF
# Nothing the test looks at, and each costs seconds on the emulated CPU.
for unit in e2scrub_reap.service e2scrub_all.timer fstrim.timer apt-daily.timer apt-daily-upgrade.timer \
            dpkg-db-backup.timer systemd-tmpfiles-clean.timer getty@tty1.service serial-getty@ttyS0.service \
            openvpn.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount; do
  ln -sf /dev/null "$NEW/etc/systemd/system/$unit"
done
ln -sf /lib/systemd/system/multi-user.target "$NEW/etc/systemd/system/default.target"
echo sysvm > "$NEW/etc/hostname"
cd "$NEW" || fail "no $NEW"
mkdir -p oldroot
pivot_root . oldroot || fail "pivot_root failed"
exec chroot . /lib/systemd/systemd </dev/console >/dev/console 2>&1
