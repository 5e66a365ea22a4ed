"""One netlink codec (issue 15, item 6): the header, the extended-ack
parser, the attribute walker and the "already gone" errnos live in
kernel/nlmsg.py alone, and the route batcher, the rtnetlink parser and
the DCO codecs use them."""

from __future__ import annotations

import errno
import re
import struct
from pathlib import Path

from netcfg.kernel import nlmsg

PACKAGE = Path(__file__).resolve().parents[2] / "netcfg"


def sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text() for p in PACKAGE.rglob("*.py")}


def test_the_wire_format_is_written_once():
    for name, text in sources().items():
        if name == "kernel/nlmsg.py":
            continue
        assert not re.search(r"Struct\(\s*[\"']=IHHII", text), f"{name} defines the netlink header again"
        assert "GONE = " not in text, f"{name} defines its own 'already gone' errnos"
        assert "NLMSGERR_ATTR_MSG" not in text, f"{name} parses extended acks itself"
        assert "def _extack" not in text and "def attributes(" not in text, f"{name} walks netlink itself"


def test_the_dco_codecs_name_their_commands_and_attributes():
    """No bare numbers in the families' requests, as in pyroute2's generic-netlink modules."""
    for family in ("dco/ovpn_dco_v2.py", "dco/ovpn.py"):
        text = sources()[family]
        body = text[text.index("class DcoV2" if "v2" in family else "class Ovpn("):]
        assert not re.search(r"\b(u8|u16|u32|be16|attr|nest)\(\d", body), f"{family}: a bare attribute number"
        assert not re.search(r"return \d+,", body), f"{family}: a bare command number"


def ack(err: int, text: bytes, capped: bool) -> bytes:
    request = struct.pack("=IHHII", 24, 24, 5, 42, 0) + b"\0" * 8
    tlv = struct.pack("=HH", 4 + len(text), nlmsg.NLMSGERR_ATTR_MSG) + text
    tlv += b"\0" * (nlmsg.align(len(tlv)) - len(tlv))
    body = struct.pack("=i", -err) + (request[:16] if capped else request) + tlv
    flags = nlmsg.NLM_F_ACK_TLVS | (nlmsg.NLM_F_CAPPED if capped else 0)
    return struct.pack("=IHHII", 16 + len(body), nlmsg.NLMSG_ERROR, flags, 42, 0) + body


def test_acks_capped_or_not():
    for capped in (True, False):
        data = ack(errno.EEXIST, b"File exists here\0", capped)
        [(kind, flags, seq, begin, end)] = list(nlmsg.messages(data))
        assert (kind, seq) == (nlmsg.NLMSG_ERROR, 42)
        assert nlmsg.error_code(data, begin) == errno.EEXIST
        assert nlmsg.extack(data, begin, end, flags) == "File exists here"


def test_attributes_nested_and_truncated():
    nested = nlmsg.nest(2, nlmsg.u32(1, 7), nlmsg.u8(2, 1))
    data = nlmsg.u32(1, 5) + nested
    top = nlmsg.attributes(data)
    assert nlmsg.uint(top[1]) == 5
    assert {k: nlmsg.uint(v) for k, v in nlmsg.walk(top[2])} == {1: 7, 2: 1}
    assert nlmsg.attributes(data[:-3]) == {1: top[1]}  # a short last attribute is not read
    assert errno.ENOENT in nlmsg.GONE and errno.EEXIST not in nlmsg.GONE
