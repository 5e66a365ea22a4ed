"""The original's <state-dir>/netcfg.json, edited as `openvpn3-admin netcfg-service` edits it.

The files below are the bytes the admin tool (v27) writes (spec 10.2,
"Files exactly as the admin tool writes them").  `netcfgctl config` must
write the very same bytes for the same edits, and the service must start
with exactly the settings the tool shows for them, each key overriding the
command line.  Every key is tested set and unset, at the next start of the
real service (`--state-dir` pointing at the directory holding the file).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support.ctl import ctl


SPEC_AFTER_FIVE_SETS = (
    "{\n"
    "\t//  Option --idle-exit :: Idle-Exit timer\n"
    '\t"idle_exit" : "0",\n'
    "\t//  Option --log-level :: Log level\n"
    '\t"log_level" : "5",\n'
    "\t//  Option --redirect-method :: Server route redirection mode\n"
    '\t"redirect_method" : "bind-device",\n'
    "\t//  Option --set-somark :: Netfilter SO_MARK\n"
    '\t"set_somark" : "42",\n'
    "\t//  Option --systemd-resolved :: Systemd-resolved in use\n"
    '\t"systemd_resolved" : true\n'
    "}\n"
)
SPEC_AFTER_RESOLV_CONF = (
    "{\n"
    "\t//  Option --idle-exit :: Idle-Exit timer\n"
    '\t"idle_exit" : "0",\n'
    "\t//  Option --log-level :: Log level\n"
    '\t"log_level" : "5",\n'
    "\t//  Option --redirect-method :: Server route redirection mode\n"
    '\t"redirect_method" : "bind-device",\n'
    "\t//  Option --resolv-conf :: resolv-conf file\n"
    '\t"resolv_conf_file" : "/etc/resolv.conf"\n'
    "}\n"
)


def one_key(option: str, key: str, value: str) -> str:
    """The file the admin tool writes after one `--config-set` (see the spec's layout)."""
    descriptions = {"log-level": "Log level", "log-file": "Log destination", "idle-exit": "Idle-Exit timer",
                    "resolv-conf": "resolv-conf file", "systemd-resolved": "Systemd-resolved in use",
                    "redirect-method": "Server route redirection mode", "set-somark": "Netfilter SO_MARK"}
    return f"{{\n\t//  Option --{option} :: {descriptions[option]}\n\t\"{key}\" : {value}\n}}\n"


@pytest.mark.asyncio
async def test_edits_are_written_byte_for_byte_as_the_admin_tool_writes_them(bus):
    d = Path(tempfile.mkdtemp(prefix="netcfg-json-"))
    f = d / "netcfg.json"
    f.write_text("")  # an empty file, as in the spec

    async def edit(*args):
        ran = await ctl(bus.address, "config", *args, "--netcfg-json", str(f))
        assert ran.returncode == 0, ran.stderr
        return ran

    for key, value in (("log-level", "5"), ("systemd-resolved", "1"), ("redirect-method", "bind-device"),
                       ("set-somark", "42"), ("idle-exit", "0")):
        await edit("set", key, value)
    assert f.read_text() == SPEC_AFTER_FIVE_SETS
    refused = await ctl(bus.address, "config", "set", "resolv-conf", "/etc/resolv.conf", "--netcfg-json", str(f))
    assert refused.returncode == 2 and "cannot be combined: resolv-conf, systemd-resolved" in refused.stderr
    assert f.read_text() == SPEC_AFTER_FIVE_SETS
    await edit("unset", "systemd-resolved")
    await edit("set", "resolv-conf", "/etc/resolv.conf")
    await edit("unset", "set-somark")
    assert f.read_text() == SPEC_AFTER_RESOLV_CONF
    shown = (await ctl(bus.address, "config", "show", "--json", "--netcfg-json", str(f),
                       "--settings", str(d / "none.yaml"))).json()
    assert shown["netcfg_json"]["keys"] == {"log-level": "5", "idle-exit": "0", "resolv-conf": "/etc/resolv.conf",
                                            "redirect-method": "bind-device"}
    # Unknown keys are dropped on a rewrite, as the tool drops them (spec: dns_backend + log_level 3).
    f.write_text('{\n\t"dns_backend" : "openresolv",\n\t"log_level" : 3\n}\n')
    ran = await edit("set", "idle-exit", "7")
    assert "dropping \"dns_backend\"" in ran.stdout
    assert f.read_text() == ('{\n\t//  Option --idle-exit :: Idle-Exit timer\n\t"idle_exit" : "7",\n'
                             '\t//  Option --log-level :: Log level\n\t"log_level" : "3"\n}\n')
    # The last key unset: the tool leaves an empty file.
    await edit("unset", "idle-exit")
    await edit("unset", "log-level")
    assert f.read_bytes() == b""
    # Bad values are refused before anything is written.
    for key, value in (("log-level", "9"), ("redirect-method", "tunnel"), ("set-somark", "x"),
                       ("systemd-resolved", "maybe"), ("idle-exit", "-1")):
        bad = await ctl(bus.address, "config", "set", key, value, "--netcfg-json", str(f))
        assert bad.returncode == 2 and bad.stderr.startswith(f"netcfgctl: {key}: "), bad.stderr
    assert f.read_bytes() == b""


def _state_dir(text: str | None) -> Path:
    d = Path(tempfile.mkdtemp(prefix="netcfg-state-"))
    os.chmod(d, 0o755)
    if text is not None:
        (d / "netcfg.json").write_text(text)
    return d


async def _status(service_factory, bus, state: Path, extra=()) -> dict:
    svc = await service_factory(extra_args=["--state-dir", str(state), *extra])
    status = (await ctl(bus.address, "status", "--json")).json()
    assert status["config_file"] == str(state / "netcfg.json")
    assert await svc.stop() == 0
    return status


@pytest.mark.asyncio
async def test_every_key_takes_effect_at_the_next_start_and_overrides_the_command_line(service_factory, bus):
    resolv = Path(tempfile.mkdtemp(prefix="netcfg-rc-")) / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\n")
    log_file = resolv.parent / "other.log"
    cases = [  # (option, file key, value as the tool writes it, what status must show)
        ("log-level", "log_level", '"5"', ("log_level", 5)),
        ("log-file", "log_file", f'"{log_file}"', ("log_file", str(log_file))),
        ("idle-exit", "idle_exit", '"7"', ("idle_exit", 7.0)),
        ("resolv-conf", "resolv_conf_file", f'"{resolv}"', ("dns_backend", "resolv-conf")),
        ("systemd-resolved", "systemd_resolved", "true", ("dns_backend", "systemd-resolved")),
        ("systemd-resolved", "systemd_resolved", "false", ("dns_backend", "none")),
        ("redirect-method", "redirect_method", '"bind-device"', ("redirect_method", "bind-device")),
        ("set-somark", "set_somark", '"42"', ("so_mark", 42)),
    ]
    # The command line says otherwise for each (the fixture's --log-level 6, --idle-exit 0, ...).
    cli = ["--dns-backend", "openresolv", "--redirect-method", "none"]
    for option, key, value, (field, expected) in cases:
        state = _state_dir(one_key(option, key, value))
        status = await _status(service_factory, bus, state, cli)
        assert status[field] == expected, (option, value, status)
        if option == "log-file":
            assert "netcfg serving" in log_file.read_text()
        # `config unset` (as --config-unset): the next start is back to the command line's value.
        ran = await ctl(bus.address, "config", "unset", option, "--netcfg-json", str(state / "netcfg.json"))
        assert ran.returncode == 0 and (state / "netcfg.json").read_bytes() == b""
        status = await _status(service_factory, bus, state, cli)
        assert status[field] != expected, (option, status)
    # An exclusive group in the file removes the other member given on the command line.
    state = _state_dir(one_key("systemd-resolved", "systemd_resolved", "true"))
    status = await _status(service_factory, bus, state, ["--resolv-conf", str(resolv)])
    assert status["dns_backend"] == "systemd-resolved"
    # The spec's whole file, as the tool wrote it, starts the service with what the tool shows.
    state = _state_dir(SPEC_AFTER_FIVE_SETS)
    status = await _status(service_factory, bus, state)
    assert (status["log_level"], status["idle_exit"], status["redirect_method"], status["so_mark"],
            status["dns_backend"]) == (5, 0.0, "bind-device", 42, "systemd-resolved")


@pytest.mark.parametrize("text, line, needle", [
    ('{\n\t"log_level" : "5",\n}\n', 3, "not valid JSON"),
    ('{\n\t// comment\n\t"log_level" : "nine"\n}\n', 3, 'bad value for "log_level"'),
    ('{\n\t"resolv_conf_file" : "/etc/resolv.conf",\n\t"systemd_resolved" : true\n}\n', 3,
     "cannot be combined: resolv-conf, systemd-resolved"),
    ('[1, 2]\n', 1, "top level must be a JSON object"),
    ('{\n\t"redirect_method" : ["host-route"]\n}\n', 2, "expected a string"),
])
def test_a_broken_file_is_one_line_naming_file_and_line(text, line, needle):
    """The real start-up, stopped by the file before it touches the bus or the kernel."""
    state = _state_dir(text)
    ran = subprocess.run([sys.executable, "-m", "netcfg", "--state-dir", str(state), "--config", "/dev/null",
                          "--bus-address", "unix:path=/nonexistent"], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2 and ran.stdout == "", ran
    assert ran.stderr.startswith(f"netcfg-service: {state}/netcfg.json:{line}: "), ran.stderr
    assert needle in ran.stderr and len(ran.stderr.splitlines()) == 1, ran.stderr


@pytest.mark.asyncio
async def test_config_finds_both_files_through_the_service(service_factory, bus):
    svc = await service_factory()
    settings = svc.settings_path
    settings.write_text("# our settings\n# somark_table: 111\n")
    for args in (("set", "somark-table", "300"), ("set", "dns-backend", "openresolv"), ("set", "log-level", "3")):
        ran = await ctl(bus.address, "config", *args)
        assert ran.returncode == 0 and "takes effect when netcfg-service next starts" in ran.stdout, ran
    assert settings.read_text() == "# our settings\n# somark_table: 111\nsomark_table: 300\ndns_backend: openresolv\n"
    assert (svc.state_dir / "netcfg.json").read_text() == one_key("log-level", "log_level", '"3"')
    shown = (await ctl(bus.address, "config", "show", "--json")).json()
    assert shown == {"netcfg_json": {"path": str(svc.state_dir / "netcfg.json"), "keys": {"log-level": "3"}},
                     "settings": {"path": str(settings), "keys": {"somark-table": 300, "dns-backend": "openresolv"}}}
    text = (await ctl(bus.address, "config", "show")).stdout
    assert "log-level" in text and "3  (Log level)" in text and "somark-table" in text
    for args, code, needle in ((("set", "somark-table", "254"), 2, "not 253-255"), (("set", "bogus", "1"), 2, "unknown key"),
                               (("set", "dns-backend"), 2, "usage"), (("unset", "dns-backend", "x"), 2, "usage")):
        ran = await ctl(bus.address, "config", *args)
        assert ran.returncode == code and needle in ran.stderr, (args, ran)
    assert settings.read_text().endswith("dns_backend: openresolv\n")
    assert await svc.stop() == 0
    svc = await service_factory(extra_args=["--state-dir", str(svc.state_dir), "--config", str(settings),
                                            "--set-somark", "7"])
    status = (await ctl(bus.address, "status", "--json")).json()
    assert (status["log_level"], status["so_mark_table"], status["settings_file"]) == (3, 300, str(settings))
