"""Options: command line and YAML file.  The command line wins over the file.

Every YAML key is documented in docs/configuration.md; `--help` lists the
options.  Bad values are argparse errors (exit code 2, a clear message).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import VERSION_STRING
from .log import JOURNAL_MODES

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
    config_file: str | None = None


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
        epilog="Options given on the command line override the --config file.  "
        "SIGTERM and SIGINT tear every device down and exit; SIGHUP is logged and ignored.  "
        "Exit codes: 0 stopped normally, 1 internal error, 2 bad options or configuration file, "
        "3 fatal start-up error (one line on stderr names it), 4 DNS could not be given back at shutdown.  "
        "See docs/configuration.md for the YAML keys and docs/troubleshooting.md.",
    )
    a = p.add_argument
    a("--version", action="version", version=VERSION_STRING)
    a("--bus-address", metavar="ADDRESS", help="serve on this D-Bus address instead of the system bus")
    a("--config", metavar="FILE", help="YAML configuration file")
    a("--log-level", metavar="LEVEL", type=_argtype(_log_level), help="0 (critical only) - 6 (debug); default 4")
    a("--log-file", metavar="FILE",
      help="log to FILE (appended) instead of stderr, or 'stdout:'; fatal start-up errors go to stderr too")
    a("--log-journal", metavar="MODE", type=_argtype(_choice(JOURNAL_MODES)),
      help="stderr for the journal: native (journald fields), prefix ('<N>' syslog priorities), "
      "off (timestamped lines), or auto (default: native or prefix when stderr is the journal's stream)")
    a("--idle-exit", metavar="MINUTES", type=_argtype(_minutes), help="exit after MINUTES idle without devices; 0 disables; default 5")
    a("--state-dir", metavar="DIR", help="directory for the crash-recovery journal; default /var/lib/netcfg")
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


def load_yaml(path: str, parser: argparse.ArgumentParser) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        parser.error(f"cannot read --config {path}: {e}")
    if not isinstance(data, dict):
        parser.error(f"--config {path}: the top level must be a mapping")
    values = {}
    for key, raw in data.items():
        if key not in YAML_KEYS:
            parser.error(f"--config {path}: unknown key '{key}' (see docs/configuration.md)")
        attr, conv = YAML_KEYS[key]
        try:
            value = conv(raw)
        except (ValueError, TypeError) as e:
            parser.error(f"--config {path}: bad value for '{key}': {e}")
        if value is not None:
            values[attr] = value
    if data.get("resolv_conf") and data.get("systemd_resolved") is True:
        parser.error(f"--config {path}: resolv_conf and systemd_resolved are mutually exclusive")
    return values


def parse(argv: list[str] | None = None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    opts = Options()
    if args.config:
        for attr, value in load_yaml(args.config, parser).items():
            setattr(opts, attr, value)
        opts.config_file = args.config
    for f in dataclasses.fields(Options):
        value = getattr(args, f.name, None)
        if value is not None:
            setattr(opts, f.name, value)
    if args.systemd_resolved:
        opts.dns_backend = "systemd-resolved"
    if args.resolv_conf:
        opts.dns_backend = "resolv-conf"
    if opts.resolv_conf and opts.dns_backend == "auto":
        opts.dns_backend = "resolv-conf"
    if opts.dns_backend == "resolv-conf" and not opts.resolv_conf:
        opts.resolv_conf = "/etc/resolv.conf"
    return opts


if __name__ == "__main__":  # pragma: no cover
    print(parse(sys.argv[1:]))
