"""How netcfgctl prints: JSON, or text that reads well at 80 columns.

Colour only when standard output is a terminal, TERM is not "dumb" and
NO_COLOR is unset or empty (https://no-color.org); `--no-color` too.
Human output wraps long values onto indented continuation lines instead
of running past column 80.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

WIDTH = 80
LABEL = 16  # label column of `field` lines, indent included
_STYLES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def wants_color(stream, disabled: bool = False) -> bool:
    if disabled or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Output:
    def __init__(self, json_mode: bool = False, no_color: bool = False, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.json_mode = json_mode
        self.color = wants_color(self.stream, no_color)

    def paint(self, text: str, style: str) -> str:
        if not self.color or not text:
            return text
        return f"\033[{_STYLES[style]}m{text}\033[0m"

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def json(self, value) -> None:
        self.line(json.dumps(value, indent=2))

    def json_line(self, value) -> None:
        """One JSON object per line (watch)."""
        self.line(json.dumps(value, separators=(",", ":")))

    def field(self, label: str, value: str, indent: int = 2) -> None:
        """`  label     value`, the value wrapped at 80 columns under itself."""
        head = " " * indent + label.ljust(LABEL - indent - 1) + " "
        if len(head) > LABEL:
            head = " " * indent + label + " "
        self.wrapped(head, value)

    def wrapped(self, head: str, text: str, head_style: str | None = None) -> None:
        """`head` then `text`, continuation lines indented to `head`'s width."""
        visible = len(head)
        lines = textwrap.wrap(text, width=max(WIDTH - visible, 20), break_long_words=False,
                              break_on_hyphens=False) or [""]
        painted = self.paint(head, head_style) if head_style else head
        self.line((painted + lines[0]).rstrip())
        for rest in lines[1:]:
            self.line(" " * visible + rest)

def listing(out: Output, key: str, items: list[dict], empty: str, print_one) -> None:
    """`{key: items}` as JSON, or each item printed by `print_one(out, item)`, a blank line between."""
    if out.json_mode:
        out.json({key: items})
        return
    if not items:
        out.line(empty)
    for i, item in enumerate(items):
        if i:
            out.line()
        print_one(out, item)


def join(values, empty: str = "-") -> str:
    values = [str(v) for v in values if v not in (None, "")]
    return ", ".join(values) if values else empty


def yes_no(value: bool) -> str:
    return "yes" if value else "no"
