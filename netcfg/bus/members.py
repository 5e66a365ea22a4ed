"""Declarations of D-Bus members, and the introspection XML built from them.

Each face (manager.py, device.py) lists its methods, properties and signals
with the exact wire names, argument names and types of the original (spec
1.2-1.5) and the access policy of every member: nothing is callable without
one.  The XML is written by hand because the real client matches
`<node name="netcfg"/>` byte for byte (spec 1.7): XML libraries put a space
before `/>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable
from xml.sax.saxutils import quoteattr


class Policy(Enum):
    BUS_POLICY = "bus_policy"  # the D-Bus policy file already decides
    OWNER_OR_ROOT = "owner_or_root"  # the device's creating process, or root
    ROOT_ONLY = "root_only"


def _args(spec: str) -> tuple[tuple[str, str], ...]:
    """"s:remote b:ipv6" -> (("remote", "s"), ("ipv6", "b"))."""
    out = []
    for item in spec.split():
        type_, name = item.split(":")
        out.append((name, type_))
    return tuple(out)


@dataclass(frozen=True)
class Method:
    name: str
    policy: Policy
    ins: str = ""  # "type:name type:name"
    outs: str = ""
    fd_in: bool = False  # reads fd 0 of the call (no `h` in the signature)
    fd_out: bool = False  # the reply carries one fd (no `h` either)
    also_accepts: tuple[str, ...] = ()  # older signatures still understood
    # None: the face's own method of this name.  Otherwise an async
    # callable(face, call, *args): a member another module adds to a face
    # (bus/admin.py, `AdminFace(extensions=...)`).
    handler: Callable | None = None

    @property
    def in_args(self):
        return _args(self.ins)

    @property
    def out_args(self):
        return _args(self.outs)

    @property
    def signature(self) -> str:
        return "".join(t for _, t in self.in_args)

    @property
    def out_signature(self) -> str:
        return "".join(t for _, t in self.out_args)


@dataclass(frozen=True)
class Property:
    name: str
    type: str
    read: Policy
    getter: Callable
    write: Policy | None = None  # None: read-only
    setter: Callable | None = None


@dataclass(frozen=True)
class Members:
    """Methods and properties another module adds to a face's interface
    (see bus/admin.py); each Method carries its `handler`."""

    methods: tuple[Method, ...] = ()
    properties: tuple[Property, ...] = ()


def merge(name: str, base: tuple, extra: tuple) -> dict:
    """name -> member, base first; a name given twice is a programming error."""
    out = {}
    for member in (*base, *extra):
        if member.name in out:
            raise ValueError(f"{name}: member {member.name} declared twice")
        out[member.name] = member
    return out


@dataclass(frozen=True)
class Signal:
    name: str
    args: str


LOG_SIGNAL = Signal("Log", "u:group u:level s:message")
NETWORK_CHANGE_SIGNAL = Signal("NetworkChange", "u:type s:device a{ss}:details")

HEADER = (
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
    '"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n'
)

STANDARD_INTERFACES = """\
  <interface name="org.freedesktop.DBus.Properties">
    <method name="Get">
      <arg type="s" name="interface_name" direction="in"/>
      <arg type="s" name="property_name" direction="in"/>
      <arg type="v" name="value" direction="out"/>
    </method>
    <method name="GetAll">
      <arg type="s" name="interface_name" direction="in"/>
      <arg type="a{sv}" name="properties" direction="out"/>
    </method>
    <method name="Set">
      <arg type="s" name="interface_name" direction="in"/>
      <arg type="s" name="property_name" direction="in"/>
      <arg type="v" name="value" direction="in"/>
    </method>
    <signal name="PropertiesChanged">
      <arg type="s" name="interface_name"/>
      <arg type="a{sv}" name="changed_properties"/>
      <arg type="as" name="invalidated_properties"/>
    </signal>
  </interface>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect">
      <arg type="s" name="xml_data" direction="out"/>
    </method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId">
      <arg type="s" name="machine_uuid" direction="out"/>
    </method>
  </interface>
"""


def _method_xml(m: Method) -> str:
    args = [(n, t, "in") for n, t in m.in_args] + [(n, t, "out") for n, t in m.out_args]
    if not args:
        return f'    <method name="{m.name}"/>\n'
    lines = [f'    <method name="{m.name}">\n']
    lines += [f"      <arg type={quoteattr(t)} name={quoteattr(n)} direction=\"{d}\"/>\n" for n, t, d in args]
    lines.append("    </method>\n")
    return "".join(lines)


def _signal_xml(s: Signal) -> str:
    lines = [f'    <signal name="{s.name}">\n']
    lines += [f"      <arg type={quoteattr(t)} name={quoteattr(n)}/>\n" for n, t in _args(s.args)]
    lines.append("    </signal>\n")
    return "".join(lines)


def _interface_xml(interface: str, methods, properties, signals) -> list[str]:
    out = [f'  <interface name="{interface}">\n']
    out += [_method_xml(m) for m in methods]
    for p in sorted(properties, key=lambda p: p.name):
        access = "readwrite" if p.setter else "read"
        out.append(f'    <property type={quoteattr(p.type)} name="{p.name}" access="{access}"/>\n')
    out += [_signal_xml(s) for s in signals]
    out.append("  </interface>\n")
    return out


def introspect(interface: str | None, methods, properties, signals, children: list[str], more=()) -> str:
    """The XML for one path; `interface` None for a bare parent node.

    `more`: further interfaces of the object, (name, methods, properties,
    signals) each, after its own: the original's block stays as it was.
    """
    out = [HEADER, "<node>\n", STANDARD_INTERFACES]
    if interface:
        out += _interface_xml(interface, methods, properties, signals)
    for block in more:
        out += _interface_xml(*block)
    out += [f'  <node name="{child}"/>\n' for child in children]
    out.append("</node>\n")
    return "".join(out)
