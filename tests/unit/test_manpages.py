"""The man pages: rendered from man/*.rst without a warning, and true to the code.

A page must list every option the code has and no other: the options of
`netcfg-service --help`, every option and command of `netcfgctl`, every key
of both configuration files.
"""

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from netcfg import config, netcfg_json
from netcfg.ctl.commands import COMMANDS
from netcfg.ctl.errors import EXIT_CODES
from netcfg.ctl.main import build_parser as ctl_parser

REPO = Path(__file__).resolve().parents[2]
MAN = REPO / "man"


def section(page: str, title: str) -> str:
    text = (MAN / page).read_text()
    return text.split(f"\n{title}\n{'=' * len(title)}\n", 1)[1].split("\n=====", 1)[0].rsplit("\n", 2)[0]


def page_options(text: str) -> set[str]:
    """Options at the start of an option-list line: `-h, --help`, `--state-dir DIR`."""
    found = set()
    for line in text.splitlines():
        m = re.match(r"^((?:-\w, )?--[a-z][a-z0-9-]*)", line)
        if m:
            found |= set(m.group(1).split(", "))
    return found


def code_options(parser: argparse.ArgumentParser) -> set[str]:
    found = set()
    for action in parser._actions:
        found |= set(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= code_options(sub)
    return found


def test_netcfg_service_page_lists_exactly_its_options():
    assert page_options(section("netcfg-service.8.rst", "OPTIONS")) == code_options(config.build_parser())


def test_netcfgctl_page_lists_exactly_its_options_commands_and_exit_codes():
    text = section("netcfgctl.8.rst", "OPTIONS") + "\n" + section("netcfgctl.8.rst", "COMMAND OPTIONS")
    assert page_options(text) == code_options(ctl_parser())
    commands = set(re.findall(r"^\*\*([a-z-]+)\*\*", section("netcfgctl.8.rst", "COMMANDS"), re.M))
    assert commands == {c.NAME for c in COMMANDS}
    codes = set(map(int, re.findall(r"^(\d)$", section("netcfgctl.8.rst", "EXIT STATUS"), re.M)))
    assert codes == set(EXIT_CODES)


def test_config_page_lists_exactly_the_keys_of_both_files():
    yaml_keys = set(re.findall(r"^``([a-z_]+)``$", section("netcfg.yaml.5.rst", "KEYS OF NETCFG.YAML"), re.M))
    json_keys = set(re.findall(r"^``([a-z_]+)``$", section("netcfg.yaml.5.rst", "KEYS OF NETCFG.JSON"), re.M))
    assert yaml_keys == set(config.YAML_KEYS)
    assert json_keys == set(netcfg_json.BY_FIELD)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("man")
    subprocess.run([str(REPO / "scripts" / "build-man.sh"), str(out)], check=True, capture_output=True)
    return out


def test_pages_render_without_warnings(rendered):
    pages = sorted(p.name for p in rendered.iterdir())
    assert pages == ["netcfg-service.8", "netcfg.yaml.5", "netcfgctl.8"]
    for page in pages:
        r = subprocess.run(["groff", "-ww", "-z", "-man", "-Tutf8", str(rendered / page)], capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", (page, r.stderr)
        assert shutil.which("man"), "man-db is missing (scripts/setup.sh installs it)"
        r = subprocess.run(["man", "--warnings", "-l", str(rendered / page)], capture_output=True, text=True,
                           env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        assert r.returncode == 0 and r.stderr == "", (page, r.stderr)
        assert page.split(".")[0] in r.stdout


def test_bash_completion_knows_every_command_option_key_and_type():
    from netcfg.ctl.commands import config as config_command
    from netcfg.events import ChangeType

    text = (REPO / "completion" / "netcfgctl.bash").read_text()
    words = set(re.findall(r"[A-Za-z_-]+", text))
    assert {c.NAME for c in COMMANDS} <= words
    assert {o for o in code_options(ctl_parser()) if o.startswith("--")} <= words
    keys = re.search(r'local keys="([^"]+)"', text).group(1).split()
    assert sorted(keys) == sorted(config_command.all_keys())
    assert {t.name for t in ChangeType} <= words
    r = subprocess.run(["bash", "-n", str(REPO / "completion" / "netcfgctl.bash")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
