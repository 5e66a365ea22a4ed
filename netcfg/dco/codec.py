"""What the two DCO families read the same way, only from other attribute
numbers: the peer-deleted notification and a GET_PEER reply.

Each family module (ovpn_dco_v2.py, ovpn.py) names its commands and
attributes and builds its own requests; it sets the numbers these shared
readers use.  Nothing here does I/O (the socket is dco/genl.py's).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..kernel.nlmsg import attributes, uint

IFINDEX = 1  # the first top-level attribute of every command, in both families
# A GET_PEER reply's counters, by the names both families give them.
COUNTERS = ("KEEPALIVE_INTERVAL", "KEEPALIVE_TIMEOUT", "VPN_RX_BYTES", "VPN_TX_BYTES", "VPN_RX_PACKETS",
            "VPN_TX_PACKETS", "LINK_RX_BYTES", "LINK_TX_BYTES", "LINK_RX_PACKETS", "LINK_TX_PACKETS")


@dataclass(frozen=True)
class PeerGone:
    """A peer-deleted notification, with the pipe datagram the client reads."""

    ifindex: int
    peer_id: int
    reason: int


class Codec:
    name: str  # the generic-netlink family
    link_kind: str  # IFLA_INFO_KIND of its links: a family and its link kind always go together
    peer_deleted_cmd: int  # also the first byte of the pipe datagram
    gone_nest: int  # the container of the notification's id and reason
    gone_id: int
    gone_reason: int
    info_nest: int  # the container of a GET_PEER reply
    info_attrs: dict[int, str]  # its counters: attribute -> name

    def peer_gone(self, cmd: int, payload: bytes) -> PeerGone | None:
        top = attributes(payload)
        if cmd != self.peer_deleted_cmd or IFINDEX not in top or self.gone_nest not in top:
            return None
        peer = attributes(top[self.gone_nest])
        return PeerGone(uint(top[IFINDEX]), uint(peer.get(self.gone_id, b"\0\0\0\0")),
                        uint(peer.get(self.gone_reason, b"\0")))

    def peer_info(self, payload: bytes) -> dict[str, int]:
        """A GET_PEER reply: the peer id and its counters (tests)."""
        peer = attributes(attributes(payload).get(self.info_nest, b""))
        return {name: uint(peer[n]) for n, name in self.info_attrs.items() if n in peer}
