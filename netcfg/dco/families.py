"""The two kernel DCO interfaces as byte layouts (spec dco.md 2-4).

`ovpn-dco-v2` is the out-of-tree module of Debian 12 / Ubuntu, spoken by
openvpn3-linux up to v27; `ovpn` is mainline Linux 6.16+ (and
ovpn-backports), spoken by openvpn3 core master.  They share no wire
layout, so each family is one small codec: a method per D-Bus operation
returning (command, attributes), and the attribute numbers from which
the shared readers (`_Codec`) decode the kernel's answers.  The socket work is in genl.py; nothing here does I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .attrs import as_dict, be16, nest, u8, u16, u32, uint
from .attrs import attr as raw
from .values import DataKey, PeerRequest

IFINDEX = 1  # the first top-level attribute of every command, in both families


@dataclass(frozen=True)
class PeerGone:
    """A peer-deleted notification, with the pipe datagram the client reads."""

    ifindex: int
    peer_id: int
    reason: int


class _Codec:
    """What the two families read the same way, only from other attribute
    numbers: the peer-deleted notification and a GET_PEER reply.  Each
    family sets the numbers; the requests it builds are its own."""

    peer_deleted_cmd: int  # also the first byte of the pipe datagram
    gone_nest: int  # the container of the notification's id and reason
    gone_id: int
    gone_reason: int
    info_nest: int  # the container of a GET_PEER reply
    info_attrs: dict[int, str]

    def peer_gone(self, cmd: int, payload: bytes) -> PeerGone | None:
        top = as_dict(payload)
        if cmd != self.peer_deleted_cmd or IFINDEX not in top or self.gone_nest not in top:
            return None
        peer = as_dict(top[self.gone_nest])
        return PeerGone(uint(top[IFINDEX]), uint(peer.get(self.gone_id, b"\0\0\0\0")),
                        uint(peer.get(self.gone_reason, b"\0")))

    def peer_info(self, payload: bytes) -> dict[str, int]:
        """A GET_PEER reply: the peer id and its counters (tests)."""
        peer = as_dict(as_dict(payload).get(self.info_nest, b""))
        return {name: uint(peer[n]) for n, name in self.info_attrs.items() if n in peer}


class DcoV2(_Codec):
    """ovpn-dco-v2: one container attribute per command, u8/u16 fields, raw sockaddr."""

    name = "ovpn-dco-v2"
    link_kind = "ovpn-dco"
    peer_deleted_cmd = 3  # OVPN_CMD_DEL_PEER
    gone_nest, gone_id, gone_reason = 4, 2, 1  # DEL_PEER {REASON 1, PEER_ID 2}: the reverse of the others
    info_nest = 8
    info_attrs = {1: "id", 7: "keepalive_interval", 8: "keepalive_timeout", 9: "vpn_rx_bytes",
                  10: "vpn_tx_bytes", 11: "vpn_rx_packets", 12: "vpn_tx_packets", 13: "link_rx_bytes",
                  14: "link_tx_bytes", 15: "link_rx_packets", 16: "link_tx_packets"}

    def new_peer(self, ifindex: int, req: PeerRequest, fd: int, tcp: bool = False) -> tuple[int, bytes]:
        """`fd`: the transport socket (the kernel looks it up in our fd table);
        `tcp`: it is a TCP socket.  The remote goes with either: required for
        UDP, ignored for TCP (as OpenVPN 2.6 sends it)."""
        fields = [u32(1, req.peer_id), u32(3, fd), raw(2, req.remote.raw)]
        if req.vpn4:
            fields.append(raw(4, req.vpn4))
        if req.vpn6:
            fields.append(raw(5, req.vpn6))
        return 1, u32(IFINDEX, ifindex) + nest(2, *fields)

    def set_peer(self, ifindex: int, peer_id: int, interval: int, timeout: int) -> tuple[int, bytes]:
        return 2, u32(IFINDEX, ifindex) + nest(3, u32(1, peer_id), u32(2, interval), u32(3, timeout))

    def del_peer(self, ifindex: int, peer_id: int) -> tuple[int, bytes]:
        return 3, u32(IFINDEX, ifindex) + nest(4, u32(2, peer_id))

    def new_key(self, ifindex: int, key: DataKey) -> tuple[int, bytes]:
        return 4, u32(IFINDEX, ifindex) + nest(
            5, u32(1, key.peer_id), u8(2, key.slot), u8(3, key.key_id), u16(4, key.cipher),
            nest(5, raw(1, key.encrypt.key), raw(2, key.encrypt.nonce_tail)),
            nest(6, raw(1, key.decrypt.key), raw(2, key.decrypt.nonce_tail)))

    def swap_keys(self, ifindex: int, peer_id: int) -> tuple[int, bytes]:
        return 5, u32(IFINDEX, ifindex) + nest(6, u32(1, peer_id))

    def get_peer(self, ifindex: int, peer_id: int) -> tuple[int, bytes]:
        return 7, u32(IFINDEX, ifindex) + nest(8, u32(1, peer_id))


class Ovpn(_Codec):
    """Mainline ovpn: shared PEER and KEYCONF containers, u32 fields, split endpoint."""

    name = "ovpn"
    link_kind = "ovpn"
    peer_deleted_cmd = 5  # OVPN_CMD_PEER_DEL_NTF
    gone_nest, gone_id, gone_reason = 2, 1, 15  # PEER {ID 1, DEL_REASON 15}
    info_nest = 2
    info_attrs = {1: "id", 13: "keepalive_interval", 14: "keepalive_timeout", 16: "vpn_rx_bytes",
                  17: "vpn_tx_bytes", 18: "vpn_rx_packets", 19: "vpn_tx_packets", 20: "link_rx_bytes",
                  21: "link_tx_bytes", 22: "link_rx_packets", 23: "link_tx_packets"}

    def new_peer(self, ifindex: int, req: PeerRequest, fd: int, tcp: bool = False) -> tuple[int, bytes]:
        remote = req.remote
        fields = [u32(1, req.peer_id), u32(6, fd)]
        # A TCP peer is the one its socket is connected to: the kernel refuses
        # a remote address with it ("unexpected remote IP address with TCP
        # socket", 6.17); a UDP peer needs one.
        if not tcp:
            if remote.ip.version == 4:
                fields.append(raw(2, remote.ip.packed))
            else:
                fields += [raw(3, remote.ip.packed), u32(4, remote.scope_id)]
            fields.append(be16(5, remote.port))
        # No VPN addresses: the kernel refuses them on a P2P device ("unexpected
        # VPN IP in P2P mode"), and netcfg's devices are all P2P.
        return 1, u32(IFINDEX, ifindex) + nest(2, *fields)

    def set_peer(self, ifindex: int, peer_id: int, interval: int, timeout: int) -> tuple[int, bytes]:
        return 2, u32(IFINDEX, ifindex) + nest(2, u32(1, peer_id), u32(13, interval), u32(14, timeout))

    def del_peer(self, ifindex: int, peer_id: int) -> tuple[int, bytes]:
        return 4, u32(IFINDEX, ifindex) + nest(2, u32(1, peer_id))

    def new_key(self, ifindex: int, key: DataKey) -> tuple[int, bytes]:
        return 6, u32(IFINDEX, ifindex) + nest(
            3, u32(1, key.peer_id), u32(2, key.slot), u32(3, key.key_id), u32(4, key.cipher),
            nest(5, raw(1, key.encrypt.key), raw(2, key.encrypt.nonce_tail)),
            nest(6, raw(1, key.decrypt.key), raw(2, key.decrypt.nonce_tail)))

    def swap_keys(self, ifindex: int, peer_id: int) -> tuple[int, bytes]:
        return 8, u32(IFINDEX, ifindex) + nest(3, u32(1, peer_id))

    def get_peer(self, ifindex: int, peer_id: int) -> tuple[int, bytes]:
        return 3, u32(IFINDEX, ifindex) + nest(2, u32(1, peer_id))


FAMILIES = {f.name: f for f in (DcoV2(), Ovpn())}


def pipe_datagram(family, gone: PeerGone) -> bytes:
    """What the client reads from GetPipeFD's socket (spec dco.md 6.4): the
    family's peer-deleted command, u32 peer id and u8 reason, host order."""
    return struct.pack("=BIB", family.peer_deleted_cmd, gone.peer_id, gone.reason)
