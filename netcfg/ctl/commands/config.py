"""`netcfgctl config show|set|unset KEY [VALUE]`: the service's two configuration files.

The original's keys (log-level, log-file, idle-exit, resolv-conf,
systemd-resolved, redirect-method, set-somark) live in the `netcfg.json`
the service names in its `config_file` property, written byte for byte as
`openvpn3-admin netcfg-service --config-set/--config-unset` writes it
(netcfg/netcfg_json.py).  Our own keys live in our YAML file (the admin
property `settings_file`, else /etc/netcfg/netcfg.yaml), because the admin
tool drops every key it does not know.  Each value is checked by the very
code the service reads it with, before anything is written; writes are
atomic.  Changes take effect when the service next starts.
"""

from __future__ import annotations

import yaml

from ... import config as service_config
from ... import netcfg_json
from ..bus import ADMIN
from ..errors import DENIED, FAILED, UNREACHABLE, USAGE, CtlError
from ..files import read_text, set_key, unset_key, write_atomically

NAME = "config"
HELP = "show, set or unset a key of netcfg.json (upstream keys) or of our YAML file (our keys)"
READS = True
FALSE_WORDS = ("0", "no", "false")
RESTART = "takes effect when netcfg-service next starts"


def our_keys() -> dict[str, str]:
    """netcfgctl key -> YAML key: every YAML key that is not one of the original's options."""
    return {k.replace("_", "-"): k for k in service_config.YAML_KEYS
            if k.replace("_", "-") not in netcfg_json.BY_OPTION}


def all_keys() -> list[str]:
    return [o.option for o in netcfg_json.OPTIONS] + sorted(our_keys())


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=("show", "set", "unset"))
    parser.add_argument("key", metavar="KEY", nargs="?", help=f"one of: {', '.join(all_keys())}")
    parser.add_argument("value", metavar="VALUE", nargs="?", help="the new value (set)")
    parser.add_argument("--netcfg-json", metavar="FILE",
                        help="edit this netcfg.json instead of the one the service names (works without it)")
    parser.add_argument("--settings", metavar="FILE",
                        help="edit this YAML file instead of the one the service read (works without it)")


async def _paths(args, ctx, need_json: bool, need_settings: bool) -> tuple[str | None, str | None]:
    json_path, settings = args.netcfg_json, args.settings
    try:
        if need_json and json_path is None:
            json_path = await (await ctx.client()).get("config_file") or None
            if json_path is None and args.action != "show":
                raise CtlError(FAILED, "netcfg-service runs without --state-dir, so it reads no netcfg.json "
                                       "(give one with --netcfg-json FILE)")
        if need_settings and settings is None:
            settings = (await (await ctx.client()).get("settings_file", ADMIN)
                        or service_config.DEFAULT_SETTINGS_FILE)
    except CtlError as e:
        if e.code == UNREACHABLE:
            raise CtlError(UNREACHABLE, f"{e.message}; name the files with --netcfg-json / --settings") from None
        raise
    return json_path, settings


def _upstream(path: str) -> netcfg_json.UpstreamFile:
    try:
        return netcfg_json.read(path) or netcfg_json.UpstreamFile(path)
    except netcfg_json.NetcfgJsonError as e:
        raise CtlError(FAILED, f"{e} (fix or remove it first)") from None
    except PermissionError as e:
        raise CtlError(DENIED, f"{path}: {e.strerror}: this needs root") from None


def _settings(path: str) -> dict:
    try:
        text = read_text(path)
        data = yaml.safe_load(text or "") or {}
    except (yaml.YAMLError, OSError) as e:
        raise CtlError(FAILED, f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise CtlError(FAILED, f"{path}: the top level must be a mapping")
    return data


def _check_upstream(option: netcfg_json.UpstreamOption, value: str) -> None:
    if option.kind == netcfg_json.PRESENT:
        if value not in netcfg_json.TRUE_WORDS + FALSE_WORDS:
            raise CtlError(USAGE, f"{option.option}: '{value}' is not one of "
                                  f"{', '.join(netcfg_json.TRUE_WORDS + FALSE_WORDS)}")
        return
    try:
        service_config.UPSTREAM_FIELDS[option.field](service_config.Options(), value)
    except (ValueError, TypeError) as e:
        raise CtlError(USAGE, f"{option.option}: {e}") from None


def _write(path: str, text: str, dir_mode: int) -> None:
    try:
        write_atomically(path, text, dir_mode)
    except PermissionError as e:
        raise CtlError(DENIED, f"cannot write {path}: {e.strerror}: this needs root") from None
    except OSError as e:
        raise CtlError(FAILED, f"cannot write {path}: {e}") from None


def edit_upstream(path: str, key: str, value: str | None, out) -> None:
    option = netcfg_json.BY_OPTION[key]
    current = _upstream(path)
    values = dict(current.values)
    if value is None:
        values.pop(option.field, None)
    else:
        _check_upstream(option, value)
        netcfg_json.set_value(values, option, value)
        clash = netcfg_json.conflicts(values)
        if clash:
            raise CtlError(USAGE, f"these options cannot be combined: {', '.join(clash)} "
                                  "(unset the other one first); nothing changed")
    for dropped in current.unknown:
        out.line(f"note: dropping \"{dropped}\" from {path}, as openvpn3-admin does: not a key of that file")
    _write(path, netcfg_json.render(values), 0o700)


def edit_settings(path: str, key: str, value: str | None) -> None:
    yaml_key = our_keys()[key]
    text = read_text(path) or ""
    _settings(path)  # refuse to edit a file that does not parse
    if value is None:
        new = unset_key(text, yaml_key)
    else:
        try:
            typed = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            typed = value
        if isinstance(typed, (dict, list)) or typed is None:
            typed = value
        new = set_key(text, yaml_key, typed)
    try:
        service_config.yaml_values(yaml.safe_load(new) or {}, path)
    except (service_config.ConfigError, yaml.YAMLError) as e:
        raise CtlError(USAGE, f"{e}; nothing changed") from None
    _write(path, new, 0o755)


async def show(args, ctx) -> int:
    json_path, settings = await _paths(args, ctx, True, True)
    upstream = _upstream(json_path) if json_path else None
    ours = _settings(settings) if settings else {}
    result = {
        "netcfg_json": {"path": json_path, "keys": {o.option: upstream.values[o.field] for o in netcfg_json.OPTIONS
                                                    if upstream and o.field in upstream.values}},
        "settings": {"path": settings, "keys": {k.replace("_", "-"): v for k, v in ours.items()}},
    }
    out = ctx.out
    if out.json_mode:
        out.json(result)
        return 0
    out.field("netcfg.json", f"{json_path or '- (the service has no --state-dir)'} (the original's keys; "
                             "openvpn3-admin netcfg-service edits it too)", indent=0)
    for description, value in netcfg_json.describe(upstream.values if upstream else {}):
        option = next(o.option for o in netcfg_json.OPTIONS if o.description == description)
        out.field(option, f"{value}  ({description})")
    out.field("settings", f"{settings} (netcfg's own keys)", indent=0)
    for key, value in result["settings"]["keys"].items():
        out.field(key, str(value))
    return 0


async def run(args, ctx) -> int:
    if args.action == "show":
        if args.key is not None:
            raise CtlError(USAGE, "config show takes no KEY")
        return await show(args, ctx)
    if args.key is None or (args.action == "set") != (args.value is not None):
        raise CtlError(USAGE, "usage: netcfgctl config set KEY VALUE | config unset KEY")
    if args.key not in all_keys():
        raise CtlError(USAGE, f"unknown key '{args.key}'; keys: {', '.join(all_keys())}")
    value = args.value if args.action == "set" else None
    if args.key in netcfg_json.BY_OPTION:
        path, _ = await _paths(args, ctx, True, False)
        edit_upstream(path, args.key, value, ctx.out)
    else:
        _, path = await _paths(args, ctx, False, True)
        edit_settings(path, args.key, value)
    ctx.out.line(f"{path} updated: {args.key} {'= ' + value if value is not None else 'unset'}; {RESTART}")
    return 0
