"""A batch of libnftables JSON commands, written in nft's own language.

Why: one expression we need has no JSON form.  `socket cgroupv2 level N
"PATH"` (split tunnelling, netcfg/split/rules.py) is parsed only by the
text grammar: libnftables' JSON parser knows the socket keys
`transparent`, `mark` and `wildcard` and refuses `cgroupv2` ("Invalid
socket key value"), in Debian 12's 1.0.6 and upstream alike; its JSON
*listing* of such a rule even drops the level.  A batch is one buffer, and
a buffer is parsed either as JSON or as text, so a table that holds that
expression has to be replaced by a text batch, all of it.

The plans stay in the JSON vocabulary of kernel/nftspec.py (the builders,
`Present`, the listings read back are JSON); this module only writes the
commands `replace_commands` returns as lines of one script, parsed by the
same libnftables in one transaction.  Strings are always quoted: nft's
grammar takes a quoted symbol (`"ipv4"`, `"established"`) wherever it
takes a bare one, so no keyword list is needed here, and interface names
or comments can never be read as keywords.  Integers are written in
decimal.  The rule sets of tests/kernel/test_leak_table.py (hypothesis:
any policy, exactly the planned rules read back) go through here.
"""

from __future__ import annotations

import json

_OPS = {"==": "", "in": "", "!=": "!= ", "<": "< ", ">": "> ", "<=": "<= ", ">=": ">= "}


def script(commands: list[dict]) -> str:
    """The commands as one nft script (one transaction when run as one buffer)."""
    return "".join(command(c) + "\n" for c in commands)


def command(cmd: dict) -> str:
    ((verb, body),) = cmd.items()
    ((kind, spec),) = body.items()
    if kind == "table":
        return f"{verb} table {spec['family']} {spec['name']}"
    where = f"{spec['family']} {spec['table']}"
    if kind == "counter":
        return f"{verb} counter {where} {spec['name']}"
    if kind == "chain":
        text = f"{verb} chain {where} {spec['name']}"
        if "hook" in spec:
            text += (f" {{ type {spec['type']} hook {spec['hook']} priority {spec['prio']};"
                     f" policy {spec.get('policy', 'accept')}; }}")
        return text
    if kind == "rule":
        text = f"{verb} rule {where} {spec['chain']} " + " ".join(map(expression, spec["expr"]))
        if spec.get("comment"):
            text += f" comment {quote(spec['comment'])}"
        return text
    raise ValueError(f"no text form for the command {json.dumps(cmd)}")


def expression(expr: dict) -> str:
    """A statement or a match of a rule's `expr` list."""
    ((kind, body),) = expr.items()
    if kind in ("accept", "drop", "masquerade") and not body:
        return kind
    if kind == "match":
        return f"{value(body['left'])} {_OPS[body['op']]}{value(body['right'])}"
    if kind == "counter":
        return f"counter name {quote(body)}"
    if kind in ("jump", "goto"):
        return f"{kind} {body['target']}"
    if kind == "mangle":
        return f"{value(body['key'])} set {value(body['value'])}"
    if kind in ("dnat", "snat"):
        return f"{kind} {body['family']} to {value(body['addr'])}"
    raise ValueError(f"no text form for the statement {json.dumps(expr)}")


def value(v) -> str:
    """An expression's operand: a key (meta, payload, ct, socket) or a constant."""
    if isinstance(v, bool):
        raise ValueError(f"no text form for {v!r}")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return quote(v)
    if isinstance(v, list):  # JSON's flag list (`ct state in [a, b]`): a bitmask, not a set
        return ",".join(map(value, v))
    ((kind, body),) = v.items()
    if kind == "set":
        return "{ " + ", ".join(map(value, body)) + " }"
    if kind == "prefix":
        return f"{body['addr']}/{body['len']}"
    if kind in ("meta", "ct"):
        return f"{kind} {body['key']}"
    if kind == "payload":
        return f"{body['protocol']} {body['field']}"
    if kind == "socket":
        level = f" level {body['level']}" if "level" in body else ""
        return f"socket {body['key']}{level}"
    raise ValueError(f"no text form for the value {json.dumps(v)}")


def quote(text: str) -> str:
    # nft's scanner ends a quoted string at the next '"' and has no escapes.
    if '"' in text or "\n" in text:
        raise ValueError(f"cannot quote {text!r} for nft")
    return f'"{text}"'
