"""netcfg.json: read with jsoncpp's comments and leniency, written as the admin tool writes it."""

import pytest
from hypothesis import given, strategies as st

from netcfg import config, netcfg_json
from netcfg.ctl.files import set_key, unset_key

TOOL_FILE = ('{\n\t//  Option --idle-exit :: Idle-Exit timer\n\t"idle_exit" : "0",\n'
             '\t//  Option --systemd-resolved :: Systemd-resolved in use\n\t"systemd_resolved" : true\n}\n')


def test_reads_what_the_tool_writes_with_lines():
    f = netcfg_json.parse(TOOL_FILE, "x.json")
    assert f.values == {"idle_exit": "0", "systemd_resolved": True}
    assert f.lines == {"idle_exit": 3, "systemd_resolved": 5}
    assert netcfg_json.render(f.values) == TOOL_FILE
    assert netcfg_json.describe(f.values) == [("Idle-Exit timer", "0"), ("Systemd-resolved in use", "Yes")]


def test_comments_strings_and_jsoncpp_conversions():
    text = ('/* block\n comment */ {\n"log_file" : "/var/log/a // not a comment",\n'
            '"log_level" : 3, // a number, read as text\n"systemd_resolved" : "no",\n"x" : 1}')
    f = netcfg_json.parse(text, "x")
    assert f.values == {"log_file": "/var/log/a // not a comment", "log_level": "3", "systemd_resolved": True}
    assert f.unknown == {"x": 6} and f.lines["log_level"] == 4
    assert netcfg_json.parse("", "x").values == {} and netcfg_json.parse("// only\n", "x").values == {}
    assert netcfg_json.parse('{"set_somark": null, "systemd_resolved": false}', "x").values == {"systemd_resolved": False}


@pytest.mark.parametrize("text, line", [('{\n"a": 1,\n}', 3), ('{\n\n"log_level": {}\n}', 3), ("[]", 1)])
def test_errors_name_the_line(text, line):
    with pytest.raises(netcfg_json.NetcfgJsonError) as e:
        netcfg_json.parse(text, "f.json")
    assert str(e.value).startswith(f"f.json:{line}: ")


def test_the_tools_set_and_conflicts():
    values = {}
    netcfg_json.set_value(values, netcfg_json.BY_OPTION["systemd-resolved"], "0")
    assert values == {"systemd_resolved": False}  # present, false: shown as "No"
    netcfg_json.set_value(values, netcfg_json.BY_OPTION["resolv-conf"], "/etc/resolv.conf")
    assert netcfg_json.conflicts(values) == ["resolv-conf", "systemd-resolved"]
    assert netcfg_json.render({}) == ""


text_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@given(st.dictionaries(st.sampled_from([o.field for o in netcfg_json.OPTIONS if o.kind != "present"]), text_values),
       st.one_of(st.none(), st.booleans()))
def test_render_then_parse_gives_the_values_back(values, flag):
    if flag is not None:
        values["systemd_resolved"] = flag
    assert netcfg_json.parse(netcfg_json.render(values), "x").values == values


def test_service_precedence_and_config_file(tmp_path):
    (tmp_path / "netcfg.json").write_text('{ "log_level" : "2", "resolv_conf_file" : "/r" }')
    yaml_file = tmp_path / "n.yaml"
    yaml_file.write_text("log_level: 1\ndns_backend: openresolv\nsomark_table: 200\n")
    o = config.parse(["--config", str(yaml_file), "--log-level", "5", "--state-dir", str(tmp_path),
                      "--systemd-resolved"])
    assert (o.log_level, o.dns_backend, o.resolv_conf, o.somark_table) == (2, "resolv-conf", "/r", 200)
    assert o.upstream_file == str(tmp_path / "netcfg.json") and o.settings_file == str(yaml_file)
    assert config.parse(["--config", "/dev/null"]).upstream_file is None  # no state dir given: no netcfg.json


def test_yaml_editing_keeps_comments():
    text = "# netcfg settings\n# dns_backend: auto\nlog_level: 4\n"
    edited = set_key(text, "dns_backend", "openresolv")
    assert edited == "# netcfg settings\n# dns_backend: auto\ndns_backend: openresolv\nlog_level: 4\n"
    assert set_key(edited, "dns_backend", "none") == edited.replace("openresolv", "none")
    assert set_key("", "somark_table", 200) == "somark_table: 200\n"
    assert set_key("a: 1\n", "state_dir", "/x: y") == "a: 1\nstate_dir: '/x: y'\n"
    assert unset_key(edited, "dns_backend") == text


def test_the_packaged_settings_file_parses_and_names_every_key_of_ours():
    from pathlib import Path

    import yaml

    from netcfg.ctl.commands.config import our_keys

    text = (Path(__file__).resolve().parents[2] / "config" / "netcfg.yaml").read_text()
    assert config.yaml_values(yaml.safe_load(text) or {}, "netcfg.yaml") == {}  # all commented out
    for key in our_keys().values():
        assert f"\n# {key}: " in text, key
    assert set_key(text, "dns_backend", "none").count("dns_backend: none\n") == 1
