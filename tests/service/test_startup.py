"""Start-up and signals (issue 10): every fatal start-up error is one line
naming what failed, on stderr and in the --log-file, with exit code 3; no
traceback; SIGHUP is logged and ignored.  The service runs for real, on
the test bus, inside a fresh network namespace (fixtures in conftest.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from support.lifecycle import wait_until
from support.users import ensure_users

PROG = [sys.executable, "-m", "netcfg"]


def run(args, *, netns=None, user=None, env=None, timeout=60) -> subprocess.CompletedProcess:
    cmd = [*PROG, "--dns-backend", "none", "--idle-exit", "0", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", *cmd]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns.name, *cmd]
    full_env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    full_env.update(PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd="/")


def critical_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "CRITICAL" in line or line.startswith("netcfg-service:")]


def assert_one_fatal_line(r: subprocess.CompletedProcess, needle: str) -> None:
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = critical_lines(r.stderr)
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_bus_unreachable_names_the_address(tmp_path, netns):
    address = f"unix:path={tmp_path}/no-bus"
    r = run(["--bus-address", address, "--state-dir", str(tmp_path / "state")], netns=netns)
    assert_one_fatal_line(r, f"cannot connect to the D-Bus bus at {address}: No such file or directory")


def test_unusable_state_dir_names_the_directory(tmp_path, bus, netns):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    r = run(["--bus-address", bus.address, "--state-dir", str(not_a_dir)], netns=netns)
    assert_one_fatal_line(r, f"cannot use the state directory (--state-dir) {not_a_dir}: File exists")


def test_not_root(tmp_path, bus):
    user = ensure_users().unprivileged
    r = run(["--bus-address", bus.address, "--state-dir", str(tmp_path)], user=user)
    assert_one_fatal_line(r, "must be started as root (or with CAP_NET_ADMIN)")


def test_fatal_line_reaches_stderr_and_the_log_file(tmp_path, netns):
    log_file = tmp_path / "netcfg.log"
    address = f"unix:path={tmp_path}/no-bus"
    r = run(["--bus-address", address, "--state-dir", str(tmp_path / "state"), "--log-file", str(log_file)],
            netns=netns)
    assert r.returncode == 3
    assert r.stderr == f"netcfg-service: cannot connect to the D-Bus bus at {address}: No such file or directory\n"
    assert len(critical_lines(log_file.read_text())) == 1
    assert "Traceback" not in log_file.read_text()


def test_unopenable_log_file_exits_2(tmp_path):
    r = run(["--log-file", str(tmp_path / "missing" / "netcfg.log")])
    assert r.returncode == 2
    assert r.stderr.startswith("netcfg-service: cannot open --log-file ") and r.stderr.count("\n") == 1


@pytest.mark.asyncio
async def test_name_already_owned(service, bus, netns, tmp_path):
    r = run(["--bus-address", bus.address, "--state-dir", str(tmp_path)], netns=netns)
    assert_one_fatal_line(r, "cannot own net.openvpn.v3.netcfg: EXISTS")


@pytest.mark.asyncio
async def test_sighup_is_logged_and_ignored(service):
    service.signal(signal.SIGHUP)
    await wait_until(lambda: "SIGHUP ignored" in service.log_text(), timeout=10)
    line = next(l for l in service.log_text().splitlines() if "SIGHUP ignored" in l)
    assert "[WARNING]" in line
    await service.assert_healthy()  # and the fixture checks it still stops cleanly


# -- where the lines go: JOURNAL_STREAM and --log-journal ---------------------

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def run_with_stderr_pipe(args, journal_stream: str | None) -> tuple[int, str]:
    """Run the service with stderr a pipe; JOURNAL_STREAM set to `journal_stream`,
    where "match" means the pipe's own device:inode (what systemd would set)."""
    read_end, write_end = os.pipe()
    st = os.fstat(write_end)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("JOURNAL_STREAM", None)
    if journal_stream == "match":
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    elif journal_stream is not None:
        env["JOURNAL_STREAM"] = journal_stream
    proc = subprocess.Popen([*PROG, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=write_end, env=env, cwd="/")
    os.close(write_end)
    with os.fdopen(read_end) as f:
        text = f.read()
    return proc.wait(30), text


FAIL_FAST = ["--bus-address", "unix:path=/nonexistent/bus", "--state-dir", "/tmp", "--dns-backend", "none"]


@pytest.mark.parametrize("journal_stream, extra", [("match", []), (None, ["--log-journal", "prefix"])],
                         ids=["JOURNAL_STREAM", "--log-journal-prefix"])
def test_journal_stream_gets_priorities_and_no_timestamp(journal_stream, extra):
    """The host venv has no python3-systemd binding, so `auto` picks the
    `<N>` prefix (the native protocol is tested in the VM, tests/sysvm)."""
    rc, text = run_with_stderr_pipe(FAIL_FAST + extra, journal_stream)
    assert rc == 3
    lines = text.splitlines()
    assert lines and all(re.match(r"^<[0-7]>", line) for line in lines), text
    assert not any(TIMESTAMP.match(line[3:]) for line in lines), text
    assert any(line.startswith("<6>[INFO] netcfg.privileges: capabilities dropped") for line in lines), text
    assert [line for line in lines if line.startswith("<2>")] == [
        "<2>[CRITICAL] netcfg: cannot connect to the D-Bus bus at unix:path=/nonexistent/bus: No such file or directory"]


@pytest.mark.parametrize("journal_stream, extra", [
    ("1:1", []),  # inherited from a parent whose stderr went elsewhere
    ("match", ["--log-journal", "off"]),
    ("garbage", []),
], ids=["other-stream", "--log-journal-off", "garbage"])
def test_plain_lines_otherwise(journal_stream, extra):
    rc, text = run_with_stderr_pipe(FAIL_FAST + extra, journal_stream)
    assert rc == 3
    lines = text.splitlines()
    assert lines and all(TIMESTAMP.match(line) for line in lines), text
