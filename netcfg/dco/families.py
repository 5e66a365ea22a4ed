"""The two kernel DCO interfaces (spec dco.md 2-4), by family name.

`ovpn-dco-v2` (ovpn_dco_v2.py) is the out-of-tree module of Debian 12 /
Ubuntu; `ovpn` (ovpn.py) is mainline Linux 6.16+.  They share no wire
layout, so each family is one small codec: a method per D-Bus operation
returning (command, attributes), and the attribute numbers from which the
shared readers (codec.py) decode the kernel's answers.  The socket work is
in genl.py; nothing here does I/O.
"""

from __future__ import annotations

import struct

from .codec import PeerGone
from .ovpn import Ovpn
from .ovpn_dco_v2 import DcoV2

__all__ = ["FAMILIES", "DcoV2", "Ovpn", "PeerGone", "pipe_datagram"]

FAMILIES = {f.name: f for f in (DcoV2(), Ovpn())}


def pipe_datagram(family, gone: PeerGone) -> bytes:
    """What the client reads from GetPipeFD's socket (spec dco.md 6.4): the
    family's peer-deleted command, u32 peer id and u8 reason, host order."""
    return struct.pack("=BIB", family.peer_deleted_cmd, gone.peer_id, gone.reason)
