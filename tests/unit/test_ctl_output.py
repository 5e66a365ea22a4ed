"""netcfgctl's output: colour only on a terminal without NO_COLOR, 80 columns, exit codes."""

import io
import os
import pty

from netcfg.ctl.main import build_parser, main
from netcfg.ctl.output import Output, wants_color


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    master, slave = pty.openpty()
    tty = os.fdopen(slave, "w")
    try:
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setenv("TERM", "xterm")
        assert wants_color(tty) and not wants_color(io.StringIO())
        assert not wants_color(tty, disabled=True)
        monkeypatch.setenv("NO_COLOR", "1")
        assert not wants_color(tty)
        monkeypatch.setenv("NO_COLOR", "")
        assert wants_color(tty)
        monkeypatch.setenv("TERM", "dumb")
        assert not wants_color(tty)
    finally:
        tty.close()
        os.close(master)


def test_long_values_wrap_at_80_columns():
    buf = io.StringIO()
    out = Output(stream=buf)
    out.field("networks", ", ".join(f"10.{i}.0.0/16" for i in range(40)))
    lines = buf.getvalue().splitlines()
    assert len(lines) > 3 and max(map(len, lines)) <= 80
    assert all(line.startswith(" " * 16) for line in lines[1:])


def test_usage_errors_exit_2_and_unreachable_exits_3(monkeypatch, capsys):
    assert build_parser().prog == "netcfgctl"
    try:
        main(["bogus"])
    except SystemExit as e:
        assert e.code == 2
    capsys.readouterr()
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    assert main(["status"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("netcfgctl: cannot connect to the system bus") and len(err.splitlines()) == 1
