"""The mainline `ovpn` generic-netlink family (spec dco.md 3): Linux 6.16+
(and ovpn-backports), spoken by openvpn3 core master.

Shared PEER and KEYCONF containers, u32 fields, the remote split into
address, scope and port.  Names are the uapi header's
(include/uapi/linux/ovpn.h, without their OVPN_ prefixes), as pyroute2's
family modules name theirs.
"""

from __future__ import annotations

from enum import IntEnum

from ..kernel.nlmsg import attr, be16, nest, u32
from .codec import COUNTERS, IFINDEX, Codec
from .values import DataKey, PeerRequest


class Cmd(IntEnum):  # OVPN_CMD_*
    PEER_NEW = 1
    PEER_SET = 2
    PEER_GET = 3
    PEER_DEL = 4
    PEER_DEL_NTF = 5
    KEY_NEW = 6
    KEY_GET = 7
    KEY_SWAP = 8
    KEY_SWAP_NTF = 9
    KEY_DEL = 10
    PEER_FLOAT_NTF = 11  # newer kernels only


class Attr(IntEnum):  # OVPN_A_*: the top level
    IFINDEX = IFINDEX
    PEER = 2
    KEYCONF = 3


class Peer(IntEnum):  # OVPN_A_PEER_*
    ID = 1
    REMOTE_IPV4 = 2
    REMOTE_IPV6 = 3
    REMOTE_IPV6_SCOPE_ID = 4
    REMOTE_PORT = 5
    SOCKET = 6
    SOCKET_NETNSID = 7
    VPN_IPV4 = 8
    VPN_IPV6 = 9
    LOCAL_IPV4 = 10
    LOCAL_IPV6 = 11
    LOCAL_PORT = 12
    KEEPALIVE_INTERVAL = 13
    KEEPALIVE_TIMEOUT = 14
    DEL_REASON = 15
    VPN_RX_BYTES = 16
    VPN_TX_BYTES = 17
    VPN_RX_PACKETS = 18
    VPN_TX_PACKETS = 19
    LINK_RX_BYTES = 20
    LINK_TX_BYTES = 21
    LINK_RX_PACKETS = 22
    LINK_TX_PACKETS = 23
    TX_ID = 24  # newer kernels only


class Keyconf(IntEnum):  # OVPN_A_KEYCONF_*
    PEER_ID = 1
    SLOT = 2
    KEY_ID = 3
    CIPHER_ALG = 4
    ENCRYPT_DIR = 5
    DECRYPT_DIR = 6


class Keydir(IntEnum):  # OVPN_A_KEYDIR_*
    CIPHER_KEY = 1
    NONCE_TAIL = 2


def _key_dir(kind: Keyconf, key) -> bytes:
    return nest(kind, attr(Keydir.CIPHER_KEY, key.key), attr(Keydir.NONCE_TAIL, key.nonce_tail))


class Ovpn(Codec):
    name = "ovpn"
    link_kind = "ovpn"
    peer_deleted_cmd = Cmd.PEER_DEL_NTF
    gone_nest, gone_id, gone_reason = Attr.PEER, Peer.ID, Peer.DEL_REASON
    info_nest = Attr.PEER
    info_attrs = {Peer.ID: "id", **{Peer[n]: n.lower() for n in COUNTERS}}

    def new_peer(self, ifindex: int, req: PeerRequest, fd: int, tcp: bool = False) -> tuple[int, bytes]:
        remote = req.remote
        fields = [u32(Peer.ID, req.peer_id), u32(Peer.SOCKET, fd)]
        # A TCP peer is the one its socket is connected to: the kernel refuses
        # a remote address with it ("unexpected remote IP address with TCP
        # socket", 6.17); a UDP peer needs one.
        if not tcp:
            if remote.ip.version == 4:
                fields.append(attr(Peer.REMOTE_IPV4, remote.ip.packed))
            else:
                fields += [attr(Peer.REMOTE_IPV6, remote.ip.packed), u32(Peer.REMOTE_IPV6_SCOPE_ID, remote.scope_id)]
            fields.append(be16(Peer.REMOTE_PORT, remote.port))
        # No VPN addresses: the kernel refuses them on a P2P device ("unexpected
        # VPN IP in P2P mode"), and netcfg's devices are all P2P.
        return Cmd.PEER_NEW, u32(Attr.IFINDEX, ifindex) + nest(Attr.PEER, *fields)

    def set_peer(self, ifindex: int, peer_id: int, interval: int, timeout: int) -> tuple[int, bytes]:
        return Cmd.PEER_SET, u32(Attr.IFINDEX, ifindex) + nest(
            Attr.PEER, u32(Peer.ID, peer_id), u32(Peer.KEEPALIVE_INTERVAL, interval),
            u32(Peer.KEEPALIVE_TIMEOUT, timeout))

    def del_peer(self, ifindex: int, peer_id: int) -> tuple[int, bytes]:
        return Cmd.PEER_DEL, u32(Attr.IFINDEX, ifindex) + nest(Attr.PEER, u32(Peer.ID, peer_id))

    def new_key(self, ifindex: int, key: DataKey) -> tuple[int, bytes]:
        return Cmd.KEY_NEW, u32(Attr.IFINDEX, ifindex) + nest(
            Attr.KEYCONF, u32(Keyconf.PEER_ID, key.peer_id), u32(Keyconf.SLOT, key.slot),
            u32(Keyconf.KEY_ID, key.key_id), u32(Keyconf.CIPHER_ALG, key.cipher),
            _key_dir(Keyconf.ENCRYPT_DIR, key.encrypt), _key_dir(Keyconf.DECRYPT_DIR, key.decrypt))

    def swap_keys(self, ifindex: int, peer_id: int) -> tuple[int, bytes]:
        return Cmd.KEY_SWAP, u32(Attr.IFINDEX, ifindex) + nest(Attr.KEYCONF, u32(Keyconf.PEER_ID, peer_id))

    def get_peer(self, ifindex: int, peer_id: int) -> tuple[int, bytes]:
        return Cmd.PEER_GET, u32(Attr.IFINDEX, ifindex) + nest(Attr.PEER, u32(Peer.ID, peer_id))
