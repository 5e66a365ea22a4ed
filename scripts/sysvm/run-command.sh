#!/bin/bash
# The real-system test guest's command (scripts/dcovm/run-in-vm.sh -i
# /sbin/sysvm-init), run by sysvm-test.service once systemd is up: the same
# markers and exit-code file as scripts/dcovm/guest-init, then power-off.
export PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PYTHONPATH=/mnt/work NETCFG_SYSVM=1
cd /mnt/work
echo "DCOVM_BEGIN"
bash /mnt/ctl/cmd.sh </dev/null
rc=$?
echo "$rc" > /mnt/ctl/rc
sync
echo "DCOVM_EXIT_CODE=$rc"
systemctl poweroff --no-block
