"""What a DCO call carries, validated: the peer's transport endpoint and VPN
addresses (NewPeer), and a data-channel key (NewKey).

The original checks only that `sa` decodes to `salen` bytes and trusts the
rest (spec dco.md 6.5): a short key or nonce made it read past the buffer,
and bad base64 aborted the service.  Here every value is checked before
anything reaches the kernel, and the error names the argument.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
import struct
from dataclasses import dataclass

from ..errors import InvalidArgument
from . import keyconfig_pb

MAX_PEER_ID = 0xFFFFFE  # 24 bits on the wire; 0xFFFFFF means "undefined"
CIPHER_AES_GCM, CIPHER_CHACHA20_POLY1305 = 1, 2
KEY_SIZES = {CIPHER_AES_GCM: (16, 24, 32), CIPHER_CHACHA20_POLY1305: (32,)}
NONCE_TAIL_SIZE = 8
SOCKADDR_IN, SOCKADDR_IN6 = 16, 28


def check_peer_id(peer_id: int, what: str = "peer_id") -> int:
    if not 0 <= peer_id <= MAX_PEER_ID:
        raise InvalidArgument(f"{what} {peer_id} is out of range 0-{MAX_PEER_ID}")
    return peer_id


def _base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{what} is not valid base64") from None


@dataclass(frozen=True, slots=True)
class Remote:
    """The peer's transport address, from a raw sockaddr_in / sockaddr_in6."""

    raw: bytes  # as the client sent it: ovpn-dco-v2 takes the sockaddr itself
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    scope_id: int = 0

    @classmethod
    def from_wire(cls, sa: str, salen: int) -> "Remote":
        raw = _base64(sa, "sa")
        if len(raw) != salen:
            raise InvalidArgument(f"Sockaddr size mismatching: sa decodes to {len(raw)} bytes, salen is {salen}")
        family = struct.unpack_from("=H", raw)[0] if len(raw) >= 2 else -1
        if family == socket.AF_INET and salen == SOCKADDR_IN:
            port, addr = struct.unpack_from("!H4s", raw, 2)
            ip, scope = ipaddress.IPv4Address(addr), 0
        elif family == socket.AF_INET6 and salen == SOCKADDR_IN6:
            port, _flow, addr = struct.unpack_from("!HI16s", raw, 2)
            scope = struct.unpack_from("=I", raw, 24)[0]
            ip = ipaddress.IPv6Address(addr)
            if ip.ipv4_mapped:  # the kernels convert these to IPv4 themselves; say it once here
                ip = ip.ipv4_mapped
                raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H4s", port, ip.packed) + bytes(8)
        else:
            raise InvalidArgument(f"sa: address family {family} with salen {salen} is not "
                                  f"sockaddr_in ({SOCKADDR_IN} bytes) or sockaddr_in6 ({SOCKADDR_IN6})")
        if port == 0 or ip.is_unspecified:
            raise InvalidArgument(f"sa: {ip} port {port} is not a peer address")
        return cls(raw, ip, port, scope)


def vpn_address(text: str, version: int) -> bytes | None:
    """vpn4/vpn6: the client sends "0.0.0.0" / "::" (or "") when it has none."""
    if text in ("", "0.0.0.0", "::"):
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        ip = None
    if ip is None or ip.version != version:
        raise InvalidArgument(f"vpn{version}: '{text[:64]}' is not an IPv{version} address")
    return ip.packed


@dataclass(frozen=True, slots=True)
class PeerRequest:
    peer_id: int
    remote: Remote
    vpn4: bytes | None
    vpn6: bytes | None

    @classmethod
    def from_wire(cls, peer_id: int, sa: str, salen: int, vpn4: str, vpn6: str) -> "PeerRequest":
        return cls(check_peer_id(peer_id), Remote.from_wire(sa, salen), vpn_address(vpn4, 4), vpn_address(vpn6, 6))


@dataclass(frozen=True, slots=True)
class KeyDirection:
    key: bytes
    nonce_tail: bytes


@dataclass(frozen=True, slots=True)
class DataKey:
    """NewKey's key_config (DcoKeyConfig protobuf, spec dco.md 6.3), checked."""

    slot: int
    key_id: int
    peer_id: int
    cipher: int
    encrypt: KeyDirection
    decrypt: KeyDirection

    @classmethod
    def from_wire(cls, key_slot: int, key_config: str) -> "DataKey":
        if key_slot not in (0, 1):
            raise InvalidArgument(f"key_slot {key_slot} is invalid: 0 (primary) or 1 (secondary)")
        msg = keyconfig_pb.parse(_base64(key_config, "key_config"))
        if not 0 <= msg.key_id <= 7:
            raise InvalidArgument(f"key_config: key_id {msg.key_id} is out of range 0-7")
        check_peer_id(msg.remote_peer_id, "key_config: remote_peer_id")
        if msg.cipher_alg not in KEY_SIZES:
            raise InvalidArgument(f"key_config: cipher_alg {msg.cipher_alg} is not AES-GCM (1) or ChaCha20-Poly1305 (2)")
        directions = [_direction(getattr(msg, name), msg.cipher_alg, name) for name in ("encrypt", "decrypt")]
        return cls(key_slot, msg.key_id, msg.remote_peer_id, msg.cipher_alg, *directions)


def _direction(d, cipher: int, name: str) -> KeyDirection:
    size = d.cipher_key_size
    if size not in KEY_SIZES[cipher]:
        raise InvalidArgument(f"key_config: {name}.cipher_key_size {size} does not fit cipher {cipher} "
                              f"(sizes {', '.join(map(str, KEY_SIZES[cipher]))})")
    if len(d.cipher_key) < size:
        raise InvalidArgument(f"key_config: {name}.cipher_key has {len(d.cipher_key)} bytes, cipher_key_size says {size}")
    if len(d.nonce_tail) < NONCE_TAIL_SIZE:
        raise InvalidArgument(f"key_config: {name}.nonce_tail has {len(d.nonce_tail)} bytes, needs {NONCE_TAIL_SIZE}")
    return KeyDirection(bytes(d.cipher_key[:size]), bytes(d.nonce_tail[:NONCE_TAIL_SIZE]))
