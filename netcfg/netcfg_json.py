"""`<state-dir>/netcfg.json`: the original's configuration file (spec 10.2-10.3).

`openvpn3-admin netcfg-service --config-set/--config-unset` edits this file
and the service reads it at start-up, where it overrides the command line.
This module knows its format both ways, so the service and `netcfgctl`
read and write it exactly as the admin tool does:

* keys and descriptions are the admin tool's option map (openvpn3-linux
  `netcfg-configfile.hpp`); values are kept as the tool keeps them: the
  text of a number or string option, a boolean for the present-flag;
* the file is JSON with `//` (and `/* */`) comments, as jsoncpp writes and
  reads it.  Comments are blanked to spaces (newlines kept) and the rest
  goes to the standard json module, so an error names the right line;
* `render` writes what the tool writes: one TAB of indent, a `//  Option
  --KEY :: DESCRIPTION` comment before each key, keys sorted, strings for
  everything but the flag, a newline after `}`; nothing at all when no key
  is set.  Keys the tool does not know are dropped, as the tool drops them.

Unlike the original, a broken file is an error naming the file and line
(the original ignores it silently): see docs/configuration.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

FILE_NAME = "netcfg.json"
INT, STRING, PRESENT = "int", "string", "present"


@dataclass(frozen=True)
class UpstreamOption:
    option: str  # the command line option, without "--"
    field: str  # its key in the file
    description: str  # what --config-show prints before the value
    kind: str  # INT, STRING or PRESENT
    group: str = ""  # an exclusive group: one member at most


OPTIONS = (
    UpstreamOption("log-level", "log_level", "Log level", INT),
    UpstreamOption("log-file", "log_file", "Log destination", STRING),
    UpstreamOption("idle-exit", "idle_exit", "Idle-Exit timer", INT),
    UpstreamOption("resolv-conf", "resolv_conf_file", "resolv-conf file", STRING, "DNS-resolver"),
    UpstreamOption("systemd-resolved", "systemd_resolved", "Systemd-resolved in use", PRESENT, "DNS-resolver"),
    UpstreamOption("redirect-method", "redirect_method", "Server route redirection mode", STRING),
    UpstreamOption("set-somark", "set_somark", "Netfilter SO_MARK", STRING),
)
BY_OPTION = {o.option: o for o in OPTIONS}
BY_FIELD = {o.field: o for o in OPTIONS}
# What the admin tool takes as "set" for the flag (SetValue); anything else is false.
TRUE_WORDS = ("1", "yes", "true")


class NetcfgJsonError(ValueError):
    """The file cannot be used; str() names the file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        super().__init__(message)
        self.path, self.line, self.message = path, line, message

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass
class UpstreamFile:
    """What one netcfg.json holds: field -> value (str, or bool for the flag)."""

    path: str
    values: dict[str, str | bool] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)  # field -> line of its key
    unknown: dict[str, int] = field(default_factory=dict)  # keys the tool would drop -> line

    def line_of(self, key: str) -> int | None:
        return self.lines.get(key) or self.unknown.get(key)


def blank_comments(text: str) -> str:
    """`//` and `/* */` comments replaced by spaces, strings untouched, newlines kept."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2  # unterminated: json then reports the end of the file
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse(text: str, path: str) -> UpstreamFile:
    result = UpstreamFile(path)
    plain = blank_comments(text)
    if not plain.strip():
        return result  # empty (what the tool writes when no key is left)
    try:
        data = json.loads(plain)
    except json.JSONDecodeError as e:
        raise NetcfgJsonError(path, e.lineno, f"not valid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(data, dict):
        raise NetcfgJsonError(path, 1, "the top level must be a JSON object { ... }")
    for key, raw in data.items():
        line = _key_line(plain, key)
        option = BY_FIELD.get(key)
        if option is None:
            result.unknown[key] = line
            continue
        value = _value(option, raw)
        if value is None:
            raise NetcfgJsonError(path, line, f"\"{key}\": {_expected(option)}, not {json.dumps(raw)}")
        if value == "":
            continue  # the original skips an empty value (GetOptions)
        result.values[key] = value
        result.lines[key] = line
    return result


def read(path: str | Path) -> UpstreamFile | None:
    """The file at `path`, None if there is none; NetcfgJsonError if it is broken."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        # (a state directory that is not one: the service's start-up check
        # names it, exit code 3)
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise NetcfgJsonError(str(path), None, f"cannot read: {e}") from None
    return parse(text, str(path))


def _value(option: UpstreamOption, raw) -> str | bool | None:
    """As jsoncpp's asString()/asBool() read it; None for what they refuse."""
    if option.kind == PRESENT:
        if isinstance(raw, str):
            return True  # "backwards compat parsing": any string means set (and the tool shows "Yes")
        if raw is None or isinstance(raw, (bool, int)):
            return bool(raw)
        return None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, (str, int)):
        return str(raw)
    if raw is None:
        return ""
    return None


def _expected(option: UpstreamOption) -> str:
    return "expected true or false" if option.kind == PRESENT else "expected a string"


def _key_line(plain: str, key: str) -> int:
    # The last occurrence: with duplicate keys the last one wins, in json and jsoncpp.
    matches = list(re.finditer(r'(?<!\\)' + re.escape(json.dumps(key)) + r"\s*:", plain))
    return plain.count("\n", 0, matches[-1].start()) + 1 if matches else 1


# -- as the admin tool edits and writes it -----------------------------------

def set_value(values: dict[str, str | bool], option: UpstreamOption, text: str) -> None:
    """`--config-set OPTION TEXT`: the flag becomes a boolean, other values are kept as typed."""
    if option.kind == PRESENT:
        values[option.field] = text in TRUE_WORDS
    elif text:
        values[option.field] = text
    else:
        values.pop(option.field, None)  # an empty value unsets (SetValue)


def conflicts(values: dict[str, str | bool]) -> list[str]:
    """Options of one exclusive group set together (CheckExclusiveOptions), in map order."""
    groups: dict[str, list[str]] = {}
    for o in OPTIONS:
        if o.group and o.field in values:
            groups.setdefault(o.group, []).append(o.option)
    return next((names for names in groups.values() if len(names) > 1), [])


def render(values: dict[str, str | bool]) -> str:
    """The file's bytes as jsoncpp's StyledStreamWriter (the tool) writes them."""
    known = {k: v for k, v in values.items() if k in BY_FIELD}
    if not known:
        return ""
    lines = ["{"]
    items = sorted(known.items())
    for i, (key, value) in enumerate(items):
        option = BY_FIELD[key]
        lines.append(f"\t//  Option --{option.option} :: {option.description}")
        text = ("true" if value else "false") if isinstance(value, bool) else quote(value)
        lines.append(f"\t{quote(key)} : {text}" + ("," if i < len(items) - 1 else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def quote(text: str) -> str:
    """A JSON string as jsoncpp quotes it (non-ASCII as \\u escapes, lowercase hex)."""
    return json.dumps(text, ensure_ascii=True)


def describe(values: dict[str, str | bool]) -> list[tuple[str, str]]:
    """(description, value) lines of `--config-show`, in the tool's order."""
    out = []
    for o in OPTIONS:
        if o.field in values:
            v = values[o.field]
            out.append((o.description, ("Yes" if v else "No") if isinstance(v, bool) else v))
    return out
