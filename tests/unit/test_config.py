"""Command line and YAML: command line wins, bad values exit 2 with a message."""

import subprocess
import sys

import pytest

from netcfg.config import parse


def run(*args):
    return subprocess.run([sys.executable, "-m", "netcfg", *args], capture_output=True, text=True, timeout=30)


def test_defaults():
    o = parse([])
    assert (o.log_level, o.idle_exit, o.redirect_method, o.set_somark, o.dns_backend) == (4, 5.0, "host-route", None, "auto")


def test_yaml_and_precedence(tmp_path):
    cfg = tmp_path / "netcfg.yaml"
    cfg.write_text("log_level: 2\nidle_exit: 0\nredirect_method: none\nset_somark: 0x10\n")
    o = parse(["--config", str(cfg), "--log-level", "5"])
    assert (o.log_level, o.idle_exit, o.redirect_method, o.set_somark) == (5, 0, "none", 16)


@pytest.mark.parametrize("args, needle", [
    (["--log-level", "7"], "log level must be 0-6"),
    (["--idle-exit", "-1"], "idle exit"),
    (["--redirect-method", "tunnel"], "not one of"),
    (["--bogus"], "unrecognized arguments"),
    (["--resolv-conf", "/x", "--systemd-resolved"], "not allowed with"),
])
def test_bad_options_exit_2(args, needle):
    r = run(*args)
    assert r.returncode == 2 and needle in r.stderr


@pytest.mark.parametrize("text, needle", [
    ("bogus_key: 1\n", "unknown key 'bogus_key'"),
    ("log_level: nine\n", "bad value for 'log_level'"),
    ("- a\n- b\n", "must be a mapping"),
])
def test_bad_yaml_exit_2(tmp_path, text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    r = run("--config", str(cfg))
    assert r.returncode == 2 and needle in r.stderr


def test_version_and_help():
    assert run("--version").stdout.strip() == "netcfg 0.1.0"
    help_text = run("--help").stdout
    for option in ("--bus-address", "--log-level", "--log-file", "--idle-exit", "--state-dir", "--config"):
        assert option in help_text
