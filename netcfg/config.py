"""Options: our YAML file, the command line, and the original's netcfg.json.

Precedence, lowest first (docs/configuration.md has the table): defaults,
our YAML file (`--config FILE`, else /etc/netcfg/netcfg.yaml if it exists),
the command line, then `<state-dir>/netcfg.json` when a state directory was
given: the original's file overrides the command line (spec 10.2), for its
own keys only (netcfg/netcfg_json.py).  Every key is documented in
docs/configuration.md and man/netcfg.yaml.5.rst; `--help` lists the
options.  Bad options are argparse errors (exit code 2); a bad file is a
ConfigError naming the file and line (exit code 2 too, one line, see
__main__.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import VERSION_STRING, netcfg_json
from .log import JOURNAL_MODES

DEFAULT_SETTINGS_FILE = "/etc/netcfg/netcfg.yaml"  # our YAML file; the package installs a commented one
REDIRECT_METHODS = ("host-route", "bind-device", "none")
DNS_BACKENDS = ("auto", "systemd-resolved", "resolv-conf", "openresolv", "none")


@dataclass
class Options:
    bus_address: str | None = None  # None: the system bus
    log_level: int = 4
    log_file: str | None = None  # a path, or "stdout:"
    log_journal: str = "auto"  # log.JOURNAL_MODES: journald priorities on stderr
    idle_exit: float = 5.0  # minutes, 0 disables
    state_dir: str = "/var/lib/netcfg"
    redirect_method: str = "host-route"
    set_somark: int | None = None
    somark_table: int = 111  # routing table of the --set-somark bypass (kernel/mark.py)
    somark_priority: int = 100  # priority of its fwmark rule: before `main` (32766)
    dns_backend: str = "auto"
    resolv_conf: str | None = None
    keep_all_capabilities: bool = False  # True: skip privileges.drop() (debugging, unusual DNS hooks)
    settings_file: str | None = None  # our YAML file, if one was read
    upstream_file: str | None = None  # <state-dir>/netcfg.json when a state dir was given (it may not exist)
    upstream_ignored: list[str] = dataclasses.field(default_factory=list)  # its keys we do not know


class ConfigError(Exception):
    """A configuration file cannot be used; the text names the file (and line)."""


# YAML key -> (Options attribute, converter).  Keys use underscores; the
# command line options are the same words with dashes.
def _log_level(v) -> int:
    level = int(v)
    if not 0 <= level <= 6:
        raise ValueError(f"log level must be 0-6, not {v}")
    return level


def _minutes(v) -> float:
    minutes = float(v)
    if minutes < 0:
        raise ValueError(f"idle exit must be >= 0 minutes, not {v}")
    return minutes


def _choice(choices):
    def check(v) -> str:
        if v not in choices:
            raise ValueError(f"'{v}' is not one of {', '.join(choices)}")
        return v

    return check


def _mark(v) -> int:
    mark = int(v, 0) if isinstance(v, str) else int(v)
    if not 0 < mark < 2**32:
        raise ValueError(f"SO_MARK must be 1-4294967295, not {v}")
    return mark


def _table(v) -> int:
    table = int(v, 0) if isinstance(v, str) else int(v)
    # 0 is "unspecified", 253-255 are default/main/local.
    if not 0 < table < 2**32 or table in (253, 254, 255):
        raise ValueError(f"table must be 1-4294967295 but not 253-255 (default, main, local), not {v}")
    return table


def _priority(v) -> int:
    priority = int(v, 0) if isinstance(v, str) else int(v)
    # The rule must be consulted before the main table's (32766).
    if not 0 < priority < 32766:
        raise ValueError(f"rule priority must be 1-32765 (before the main table's rule), not {v}")
    return priority


def _path(v) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("must be a non-empty string")
    return v


YAML_KEYS = {
    "bus_address": ("bus_address", _path),
    "log_level": ("log_level", _log_level),
    "log_file": ("log_file", _path),
    "log_journal": ("log_journal", _choice(JOURNAL_MODES)),
    "idle_exit": ("idle_exit", _minutes),
    "state_dir": ("state_dir", _path),
    "redirect_method": ("redirect_method", _choice(REDIRECT_METHODS)),
    "set_somark": ("set_somark", _mark),
    "somark_table": ("somark_table", _table),
    "somark_priority": ("somark_priority", _priority),
    "dns_backend": ("dns_backend", _choice(DNS_BACKENDS)),
    "resolv_conf": ("resolv_conf", _path),
    "systemd_resolved": ("dns_backend", lambda v: "systemd-resolved" if _bool(v) else None),
    "keep_all_capabilities": ("keep_all_capabilities", lambda v: _bool(v)),
}


def _bool(v) -> bool:
    # The original treats a present `false` as enabled (spec 10.2 [quirk]); we don't.
    if isinstance(v, bool):
        return v
    if str(v).lower() in ("1", "yes", "true", "on"):
        return True
    if str(v).lower() in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"'{v}' is not a boolean")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="netcfg-service",
        description="netcfg: the OpenVPN 3 Linux network-configuration D-Bus service "
        "(net.openvpn.v3.netcfg), re-implemented in Python.  Must be started as root "
        "(or with CAP_NET_ADMIN); it keeps only the capabilities it needs.",
        epilog="Precedence: defaults < the YAML file < the command line < <state-dir>/netcfg.json "
        "(the original's file, edited by openvpn3-admin netcfg-service and netcfgctl config; read only "
        "when a state directory is given).  Keys: netcfg.yaml(5).  "
        "SIGTERM and SIGINT tear every device down and exit; SIGHUP is logged and ignored.  "
        "Exit codes: 0 stopped normally, 1 internal error, 2 bad options or configuration file, "
        "3 fatal start-up error (one line on stderr names it), 4 DNS configuration not given back at shutdown.",
    )
    a = p.add_argument
    a("--version", action="version", version=VERSION_STRING)
    a("--bus-address", metavar="ADDRESS", help="serve on this D-Bus address instead of the system bus")
    a("--config", metavar="FILE", help=f"our YAML configuration file; default {DEFAULT_SETTINGS_FILE} if it exists")
    a("--log-level", metavar="LEVEL", type=_argtype(_log_level), help="0 (critical only) - 6 (debug); default 4")
    a("--log-file", metavar="FILE",
      help="log to FILE (appended) instead of stderr, or 'stdout:'; fatal start-up errors go to stderr too")
    a("--log-journal", metavar="MODE", type=_argtype(_choice(JOURNAL_MODES)),
      help="stderr for the journal: native (journald fields), prefix ('<N>' syslog priorities), "
      "off (timestamped lines), or auto (default: native or prefix when stderr is the journal's stream)")
    a("--idle-exit", metavar="MINUTES", type=_argtype(_minutes), help="exit after MINUTES idle without devices; 0 disables; default 5")
    a("--state-dir", metavar="DIR", help="directory for the crash-recovery journal, and of netcfg.json "
      "(read when this is given); default /var/lib/netcfg")
    a("--redirect-method", metavar="METHOD", type=_argtype(_choice(REDIRECT_METHODS)),
      help="how ProtectSocket keeps the VPN transport out of the tunnel: host-route (default), bind-device, none")
    a("--set-somark", metavar="MARK", type=_argtype(_mark),
      help="set SO_MARK MARK on protected sockets, and route marked packets via the uplink "
      "(rule 'fwmark MARK lookup TABLE' plus the uplink's default routes in TABLE)")
    a("--somark-table", metavar="TABLE", type=_argtype(_table),
      help="routing table for --set-somark: copies of the uplink's default routes; default 111")
    a("--somark-priority", metavar="PRIORITY", type=_argtype(_priority),
      help="priority of the --set-somark rule, 1-32765 (before main); default 100")
    a("--dns-backend", metavar="BACKEND", type=_argtype(_choice(DNS_BACKENDS)),
      help="auto (default), systemd-resolved, resolv-conf, openresolv, none")
    a("--keep-all-capabilities", action="store_true", default=None,
      help="do not drop capabilities after start-up (by default only CAP_NET_ADMIN, CAP_NET_RAW, "
      "CAP_DAC_OVERRIDE, CAP_CHOWN and CAP_FOWNER are kept; see docs/configuration.md)")
    dns = p.add_mutually_exclusive_group()
    dns.add_argument("--resolv-conf", metavar="FILE", help="manage FILE as resolv.conf (same as --dns-backend resolv-conf)")
    dns.add_argument("--systemd-resolved", action="store_true", default=None,
                     help="use systemd-resolved (same as --dns-backend systemd-resolved)")
    return p


def _argtype(check):
    def conv(text: str):
        try:
            return check(text)
        except (ValueError, TypeError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    conv.__name__ = check.__name__.strip("_")
    return conv


def load_yaml(path: str) -> dict:
    """Our YAML file as Options attributes; ConfigError if it is unusable."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (key: value lines)")
    return yaml_values(data, path)


def yaml_values(data: dict, path: str) -> dict:
    values = {}
    for key, raw in data.items():
        if key not in YAML_KEYS:
            raise ConfigError(f"{path}: unknown key '{key}' (see netcfg.yaml(5))")
        attr, conv = YAML_KEYS[key]
        try:
            value = conv(raw)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{path}: bad value for '{key}': {e}") from None
        if value is not None:
            values[attr] = value
    if data.get("resolv_conf") and data.get("systemd_resolved") is True:
        raise ConfigError(f"{path}: resolv_conf and systemd_resolved are mutually exclusive")
    return values


# netcfg.json field -> what it sets, from the admin tool's text (netcfg_json.py).
def _upstream_dns(opts: Options, field: str, value) -> None:
    # The exclusive group "DNS-resolver" decides the backend, whatever the
    # command line or our file said (spec 10.2).  A flag stored as false
    # means what the admin tool shows ("Systemd-resolved in use: No"), not
    # the original's "enabled anyway" [quirk]: no resolver of the group.
    if field == "resolv_conf_file":
        opts.dns_backend, opts.resolv_conf = "resolv-conf", _path(value)
    else:
        opts.dns_backend, opts.resolv_conf = ("systemd-resolved" if value else "none"), None


UPSTREAM_FIELDS = {
    "log_level": lambda o, v: setattr(o, "log_level", _log_level(v)),
    "log_file": lambda o, v: setattr(o, "log_file", _path(v)),
    "idle_exit": lambda o, v: setattr(o, "idle_exit", _minutes(v)),
    "resolv_conf_file": lambda o, v: _upstream_dns(o, "resolv_conf_file", v),
    "systemd_resolved": lambda o, v: _upstream_dns(o, "systemd_resolved", v),
    "redirect_method": lambda o, v: setattr(o, "redirect_method", _choice(REDIRECT_METHODS)(v)),
    "set_somark": lambda o, v: setattr(o, "set_somark", _mark(v)),
}


def apply_upstream(opts: Options, path: str) -> None:
    """Override `opts` with what netcfg.json at `path` sets (if the file exists)."""
    try:
        upstream = netcfg_json.read(path)
    except netcfg_json.NetcfgJsonError as e:
        raise ConfigError(str(e)) from None
    if upstream is None:
        return
    clash = netcfg_json.conflicts(upstream.values)
    if clash:
        raise ConfigError(f"{path}:{upstream.line_of(netcfg_json.BY_OPTION[clash[-1]].field)}: "
                          f"these options cannot be combined: {', '.join(clash)}")
    for key, value in upstream.values.items():
        try:
            UPSTREAM_FIELDS[key](opts, value)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{path}:{upstream.line_of(key)}: bad value for \"{key}\": {e}") from None
    if upstream.unknown:
        # Kept as the original does (ignored), but said: the admin tool drops them at its next edit.
        opts.upstream_ignored = sorted(upstream.unknown)


def parse(argv: list[str] | None = None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    opts = Options()
    settings = args.config or (DEFAULT_SETTINGS_FILE if Path(DEFAULT_SETTINGS_FILE).exists() else None)
    yaml_state_dir = False
    if settings:
        values = load_yaml(settings)
        for attr, value in values.items():
            setattr(opts, attr, value)
        opts.settings_file = settings
        yaml_state_dir = "state_dir" in values
    for f in dataclasses.fields(Options):
        value = getattr(args, f.name, None)
        if value is not None:
            setattr(opts, f.name, value)
    if args.systemd_resolved:
        opts.dns_backend = "systemd-resolved"
    if args.resolv_conf:
        opts.dns_backend = "resolv-conf"
    if args.state_dir is not None or yaml_state_dir:
        # Spec 10.2: only with a state directory given (the D-Bus activation
        # file and the unit give one); the config_file property names it.
        opts.upstream_file = str(Path(opts.state_dir) / netcfg_json.FILE_NAME)
        apply_upstream(opts, opts.upstream_file)
    if opts.resolv_conf and opts.dns_backend == "auto":
        opts.dns_backend = "resolv-conf"
    if opts.dns_backend == "resolv-conf" and not opts.resolv_conf:
        opts.resolv_conf = "/etc/resolv.conf"
    return opts


if __name__ == "__main__":  # pragma: no cover
    print(parse(sys.argv[1:]))
