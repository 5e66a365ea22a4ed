"""DCO requests byte for byte, against the golden bytes of spec dco.md 8.2
(derived from the kernels' uapi headers and policies; the protobuf example
verified with protoc).  The VM tests (tests/dco, scripts/dco-tests.sh)
send the same requests to the real modules: ovpn-dco-v2 on kernel 6.1 and
mainline ovpn on a 6.17 backports kernel (tests/dco/test_dco_codec.py)."""

from __future__ import annotations

import base64
import struct

import pytest

from netcfg.dco.families import DcoV2, Ovpn, PeerGone, pipe_datagram
from netcfg.dco.values import DataKey, PeerRequest

KEY_B64 = ("CAAQABgBIh4KEAABAgMEBQYHCAkKCwwNDg8aCKChoqOkpaanIBAqHgoQEBESExQVFhcYGRobHB0eHxoIsLGys7S1"
           "trcgEA==")
SA_192_0_2_1_1194 = "AgAEqsAAAgEAAAAAAAAAAA=="


def genl(message: tuple[int, bytes]) -> str:
    cmd, attrs = message
    return (struct.pack("=BBH", cmd, 0, 0) + attrs).hex()


def golden(text: str) -> str:
    return "".join(text.split())


PEER = PeerRequest.from_wire(0, SA_192_0_2_1_1194, 16, "0.0.0.0", "::")
KEY = DataKey.from_wire(0, KEY_B64)


def test_v2_new_peer():
    assert genl(DcoV2().new_peer(5, PEER, 7)) == golden("""
        01000000 08000100 05000000 28000280 08000100 00000000 08000300 07000000
        14000200 020004aa c0000201 00000000 00000000""")


def test_v2_new_key():
    assert genl(DcoV2().new_key(5, KEY)) == golden("""
        04000000 08000100 05000000 6c000580 08000100 00000000 05000200 00000000
        05000300 00000000 06000400 01000000 24000580 14000100 00010203 04050607
        08090a0b 0c0d0e0f 0c000200 a0a1a2a3 a4a5a6a7 24000680 14000100 10111213
        14151617 18191a1b 1c1d1e1f 0c000200 b0b1b2b3 b4b5b6b7""")


def test_v2_small_commands():
    v2 = DcoV2()
    assert genl(v2.set_peer(5, 0, 10, 60)) == golden(
        "02000000 08000100 05000000 1c000380 08000100 00000000 08000200 0a000000 08000300 3c000000")
    assert genl(v2.swap_keys(5, 0)) == golden("05000000 08000100 05000000 0c000680 08000100 00000000")
    assert genl(v2.del_peer(5, 0)) == golden("03000000 08000100 05000000 0c000480 08000200 00000000")
    assert genl(v2.get_peer(5, 0)) == golden("07000000 08000100 05000000 0c000880 08000100 00000000")


def test_v2_peer_deleted_notification_and_pipe_datagram():
    payload = bytes.fromhex(golden("08000100 05000000 14000480 05000100 02000000 08000200 00000000"))
    gone = DcoV2().peer_gone(3, payload)
    assert gone == PeerGone(ifindex=5, peer_id=0, reason=2)
    assert pipe_datagram(DcoV2(), gone) == bytes.fromhex("03" "00000000" "02")
    assert DcoV2().peer_gone(7, payload) is None  # other commands are not peer deletions


def test_mainline_new_peer_has_no_vpn_addresses():
    peer = PeerRequest.from_wire(0, SA_192_0_2_1_1194, 16, "10.8.0.1", "")
    assert genl(Ovpn().new_peer(5, peer, 7)) == golden("""
        01000000 08000100 05000000 24000280 08000100 00000000 08000600 07000000
        08000200 c0000201 06000500 04aa0000""")


def test_mainline_tcp_peer_has_no_remote():
    """The kernel refuses a remote with a TCP socket: "unexpected remote IP
    address with TCP socket" (6.17, tests/dco/test_dco_codec.py)."""
    assert genl(Ovpn().new_peer(5, PEER, 7, tcp=True)) == golden(
        "01000000 08000100 05000000 14000280 08000100 00000000 08000600 07000000")
    assert DcoV2().new_peer(5, PEER, 7, tcp=True) == DcoV2().new_peer(5, PEER, 7)  # ignored there


def test_mainline_ipv6_remote_with_scope_id():
    sa6 = struct.pack("=H", 10) + struct.pack("!HI16s", 1194, 0, bytes.fromhex("fe80" + "00" * 13 + "01"))
    sa6 += struct.pack("=I", 3)
    peer = PeerRequest.from_wire(0, base64.b64encode(sa6).decode(), 28, "", "")
    assert genl(Ovpn().new_peer(5, peer, 7)) == golden("""
        01000000 08000100 05000000 38000280 08000100 00000000 08000600 07000000
        14000300 fe800000 00000000 00000000 00000001 08000400 03000000 06000500
        04aa0000""")


def test_mainline_key_and_keepalive():
    assert genl(Ovpn().new_key(5, KEY)) == golden("""
        06000000 08000100 05000000 6c000380 08000100 00000000 08000200 00000000
        08000300 00000000 08000400 01000000 24000580 14000100 00010203 04050607
        08090a0b 0c0d0e0f 0c000200 a0a1a2a3 a4a5a6a7 24000680 14000100 10111213
        14151617 18191a1b 1c1d1e1f 0c000200 b0b1b2b3 b4b5b6b7""")
    assert genl(Ovpn().set_peer(5, 0, 10, 60)) == golden(
        "02000000 08000100 05000000 1c000280 08000100 00000000 08000d00 0a000000 08000e00 3c000000")
    assert genl(Ovpn().swap_keys(5, 0)) == golden("08000000 08000100 05000000 0c000380 08000100 00000000")


def test_mainline_peer_deleted_notification():
    payload = bytes.fromhex(golden("08000100 05000000 14000280 08000f00 02000000 08000100 00000000"))
    gone = Ovpn().peer_gone(5, payload)
    assert gone == PeerGone(ifindex=5, peer_id=0, reason=2)
    assert pipe_datagram(Ovpn(), gone) == bytes.fromhex("05" "00000000" "02")


def test_ipv6_remote_and_mapped_ipv4():
    sa6 = struct.pack("=H", 10) + struct.pack("!HI16s", 1194, 0, bytes.fromhex("20010db8" + "00" * 11 + "01"))
    sa6 += struct.pack("=I", 3)
    peer = PeerRequest.from_wire(9, base64.b64encode(sa6).decode(), 28, "0.0.0.0", "fd00::1")
    assert (str(peer.remote.ip), peer.remote.port, peer.remote.scope_id) == ("2001:db8::1", 1194, 3)
    assert peer.vpn6 == bytes.fromhex("fd00" + "00" * 13 + "01")
    mapped = struct.pack("=H", 10) + struct.pack("!HI16s", 1194, 0, bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1]))
    mapped += bytes(4)
    peer = PeerRequest.from_wire(0, base64.b64encode(mapped).decode(), 28, "", "")
    assert peer.remote.raw == base64.b64decode(SA_192_0_2_1_1194)  # sent to ovpn-dco-v2 as sockaddr_in


@pytest.mark.parametrize("args, text", [
    ((0, "not base64!", 16, "", ""), "sa is not valid base64"),
    ((0, SA_192_0_2_1_1194, 28, "", ""), "Sockaddr size mismatching"),
    ((0, base64.b64encode(bytes(16)).decode(), 16, "", ""), "is not sockaddr_in"),
    ((0x1000000, SA_192_0_2_1_1194, 16, "", ""), "peer_id 16777216 is out of range"),
    ((0, SA_192_0_2_1_1194, 16, "::1", ""), "vpn4: '::1' is not an IPv4 address"),
    ((0, SA_192_0_2_1_1194, 16, "", "banana"), "vpn6: 'banana' is not an IPv6 address"),
    ((0, base64.b64encode(b"\x02\x00\x00\x00" + bytes(12)).decode(), 16, "", ""), "is not a peer address"),
])
def test_new_peer_arguments_refused(args, text):
    with pytest.raises(Exception, match=text):
        PeerRequest.from_wire(*args)


def _key(**changes) -> str:
    from netcfg.dco.keyconfig_pb import parse
    msg = parse(base64.b64decode(KEY_B64))
    for path, value in changes.items():
        target = msg
        *parents, name = path.split("__")
        for p in parents:
            target = getattr(target, p)
        setattr(target, name, value)
    return base64.b64encode(msg.SerializeToString()).decode()


@pytest.mark.parametrize("slot, config, text", [
    (2, KEY_B64, "key_slot 2 is invalid"),
    (0, "%%%", "key_config is not valid base64"),
    (0, base64.b64encode(b"\x08\x01").decode(), "Failed to parse DCO key configuration: missing"),
    (0, base64.b64encode(b"\xff\xff\xff").decode(), "Failed to parse DCO key configuration"),
    (0, _key(key_id=8), "key_id 8 is out of range"),
    (0, _key(cipher_alg=0), "cipher_alg 0 is not"),
    (0, _key(encrypt__cipher_key_size=64), "encrypt.cipher_key_size 64 does not fit"),
    (0, _key(decrypt__cipher_key=b"short"), "decrypt.cipher_key has 5 bytes"),
    (0, _key(encrypt__nonce_tail=b"1234"), "encrypt.nonce_tail has 4 bytes"),
    (0, _key(cipher_alg=2), "cipher_key_size 16 does not fit cipher 2"),
])
def test_new_key_arguments_refused(slot, config, text):
    with pytest.raises(Exception, match=text):
        DataKey.from_wire(slot, config)


def test_key_uses_exactly_the_declared_sizes():
    key = DataKey.from_wire(1, _key(encrypt__nonce_tail=bytes(range(12)), decrypt__cipher_key=bytes(40)))
    assert key.encrypt.nonce_tail == bytes(range(8)) and len(key.decrypt.key) == 16 and key.slot == 1
