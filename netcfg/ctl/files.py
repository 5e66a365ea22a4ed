"""Editing the two configuration files: atomic writes, and our YAML file line by line.

Our YAML file is a flat mapping of scalars (netcfg/config.py YAML_KEYS),
and the package installs it full of comments that document each key.  A
YAML library would drop those comments on a rewrite (PyYAML keeps none; a
round-trip library would be a new dependency for one flat file), so `set`
and `unset` edit the key's own line and keep every other byte; PyYAML then
reads the result back and the service's own validation must accept it
before anything is written.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .. import atomic_file


def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def write_atomically(path: str, text: str, dir_mode: int = 0o755) -> None:
    """Replace `path` by `text` (netcfg/atomic_file.py: temporary file, fsync, rename, fsync of the
    directory), its mode kept, else 0644."""
    target = Path(path)
    if target.exists() and not target.is_file():  # /dev/null, a directory: never replaced
        raise IsADirectoryError(f"{path} is not a regular file")
    target.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    atomic_file.write_atomically(target, text.encode("utf-8"), mode=mode)


def _key_line(key: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(key)}\s*:")


def yaml_line(key: str, value) -> str:
    """`key: value` as YAML writes it (strings quoted when they must be)."""
    return yaml.safe_dump({key: value}, default_flow_style=False, allow_unicode=True).rstrip("\n")


def set_key(text: str, key: str, value) -> str:
    """Set a top-level key: its line replaced (duplicates dropped), else added
    after its commented-out example, else at the end."""
    lines = text.splitlines()
    new = yaml_line(key, value)
    own = _key_line(key)
    found = [i for i, line in enumerate(lines) if own.match(line)]
    if found:
        lines[found[0]] = new
        lines = [line for i, line in enumerate(lines) if i not in found[1:]]
    else:
        example = re.compile(rf"^#\s*{re.escape(key)}\s*:")
        at = next((i for i, line in enumerate(lines) if example.match(line)), None)
        if at is None:
            lines.append(new)
        else:
            lines.insert(at + 1, new)
    return "\n".join(lines) + "\n"


def unset_key(text: str, key: str) -> str:
    own = _key_line(key)
    lines = [line for line in text.splitlines() if not own.match(line)]
    return "\n".join(lines) + "\n" if lines else ""
