"""The `ovpn-dco-v2` generic-netlink family (spec dco.md 2): the out-of-tree
module of Debian 12 / Ubuntu, spoken by openvpn3-linux up to v27.

One container attribute per command, u8/u16 fields, the remote as a raw
sockaddr.  Names are the uapi header's (include/uapi/linux/ovpn_dco.h,
without their OVPN_ prefixes), as pyroute2's family modules name theirs.
"""

from __future__ import annotations

from enum import IntEnum

from ..kernel.nlmsg import attr, nest, u8, u16, u32
from .codec import COUNTERS, IFINDEX, Codec
from .values import DataKey, PeerRequest


class Cmd(IntEnum):  # enum ovpn_nl_commands
    NEW_PEER = 1
    SET_PEER = 2
    DEL_PEER = 3  # also the multicast "peer deleted" notification
    NEW_KEY = 4
    SWAP_KEYS = 5
    DEL_KEY = 6
    GET_PEER = 7


class Attr(IntEnum):  # enum ovpn_netlink_attrs: the top level
    IFINDEX = IFINDEX
    NEW_PEER = 2
    SET_PEER = 3
    DEL_PEER = 4
    NEW_KEY = 5
    SWAP_KEYS = 6
    DEL_KEY = 7
    GET_PEER = 8


class NewPeer(IntEnum):  # OVPN_NEW_PEER_ATTR_*
    PEER_ID = 1
    SOCKADDR_REMOTE = 2
    SOCKET = 3
    IPV4 = 4
    IPV6 = 5
    LOCAL_IP = 6


class SetPeer(IntEnum):  # OVPN_SET_PEER_ATTR_*
    PEER_ID = 1
    KEEPALIVE_INTERVAL = 2
    KEEPALIVE_TIMEOUT = 3


class DelPeer(IntEnum):  # OVPN_DEL_PEER_ATTR_*: the reverse order of the other sets
    REASON = 1
    PEER_ID = 2


class NewKey(IntEnum):  # OVPN_NEW_KEY_ATTR_*
    PEER_ID = 1
    KEY_SLOT = 2
    KEY_ID = 3
    CIPHER_ALG = 4
    ENCRYPT_KEY = 5
    DECRYPT_KEY = 6


class KeyDir(IntEnum):  # OVPN_KEY_DIR_ATTR_*
    CIPHER_KEY = 1
    NONCE_TAIL = 2


class SwapKeys(IntEnum):  # OVPN_SWAP_KEYS_ATTR_*
    PEER_ID = 1


class GetPeer(IntEnum):  # OVPN_GET_PEER_ATTR_* (request)
    PEER_ID = 1


class GetPeerResp(IntEnum):  # OVPN_GET_PEER_RESP_ATTR_*
    PEER_ID = 1
    SOCKADDR_REMOTE = 2
    IPV4 = 3
    IPV6 = 4
    LOCAL_IP = 5
    LOCAL_PORT = 6
    KEEPALIVE_INTERVAL = 7
    KEEPALIVE_TIMEOUT = 8
    VPN_RX_BYTES = 9
    VPN_TX_BYTES = 10
    VPN_RX_PACKETS = 11
    VPN_TX_PACKETS = 12
    LINK_RX_BYTES = 13
    LINK_TX_BYTES = 14
    LINK_RX_PACKETS = 15
    LINK_TX_PACKETS = 16


def _key_dir(kind: NewKey, key) -> bytes:
    return nest(kind, attr(KeyDir.CIPHER_KEY, key.key), attr(KeyDir.NONCE_TAIL, key.nonce_tail))


class DcoV2(Codec):
    name = "ovpn-dco-v2"
    link_kind = "ovpn-dco"
    peer_deleted_cmd = Cmd.DEL_PEER
    gone_nest, gone_id, gone_reason = Attr.DEL_PEER, DelPeer.PEER_ID, DelPeer.REASON
    info_nest = Attr.GET_PEER
    info_attrs = {GetPeerResp.PEER_ID: "id", **{GetPeerResp[n]: n.lower() for n in COUNTERS}}

    def new_peer(self, ifindex: int, req: PeerRequest, fd: int, tcp: bool = False) -> tuple[int, bytes]:
        """`fd`: the transport socket (the kernel looks it up in our fd table);
        `tcp`: it is a TCP socket.  The remote goes with either: required for
        UDP, ignored for TCP (as OpenVPN 2.6 sends it)."""
        fields = [u32(NewPeer.PEER_ID, req.peer_id), u32(NewPeer.SOCKET, fd),
                  attr(NewPeer.SOCKADDR_REMOTE, req.remote.raw)]
        if req.vpn4:
            fields.append(attr(NewPeer.IPV4, req.vpn4))
        if req.vpn6:
            fields.append(attr(NewPeer.IPV6, req.vpn6))
        return Cmd.NEW_PEER, u32(Attr.IFINDEX, ifindex) + nest(Attr.NEW_PEER, *fields)

    def set_peer(self, ifindex: int, peer_id: int, interval: int, timeout: int) -> tuple[int, bytes]:
        return Cmd.SET_PEER, u32(Attr.IFINDEX, ifindex) + nest(
            Attr.SET_PEER, u32(SetPeer.PEER_ID, peer_id), u32(SetPeer.KEEPALIVE_INTERVAL, interval),
            u32(SetPeer.KEEPALIVE_TIMEOUT, timeout))

    def del_peer(self, ifindex: int, peer_id: int) -> tuple[int, bytes]:
        return Cmd.DEL_PEER, u32(Attr.IFINDEX, ifindex) + nest(Attr.DEL_PEER, u32(DelPeer.PEER_ID, peer_id))

    def new_key(self, ifindex: int, key: DataKey) -> tuple[int, bytes]:
        return Cmd.NEW_KEY, u32(Attr.IFINDEX, ifindex) + nest(
            Attr.NEW_KEY, u32(NewKey.PEER_ID, key.peer_id), u8(NewKey.KEY_SLOT, key.slot),
            u8(NewKey.KEY_ID, key.key_id), u16(NewKey.CIPHER_ALG, key.cipher),
            _key_dir(NewKey.ENCRYPT_KEY, key.encrypt), _key_dir(NewKey.DECRYPT_KEY, key.decrypt))

    def swap_keys(self, ifindex: int, peer_id: int) -> tuple[int, bytes]:
        return Cmd.SWAP_KEYS, u32(Attr.IFINDEX, ifindex) + nest(Attr.SWAP_KEYS, u32(SwapKeys.PEER_ID, peer_id))

    def get_peer(self, ifindex: int, peer_id: int) -> tuple[int, bytes]:
        return Cmd.GET_PEER, u32(Attr.IFINDEX, ifindex) + nest(Attr.GET_PEER, u32(GetPeer.PEER_ID, peer_id))
