"""The far end of a DCO tunnel, made without netcfg, for tests/dco.

    python dco_peer.py FAMILY IFNAME LOCAL_IP PEER_IP PORT PEER_ID TUNNEL_CIDR KEY_B64 [udp|tcp]

Run inside the router namespace (ip netns exec).  Creates a link of
FAMILY's kind (ovpn-dco-v2: ``ovpn-dco``; ovpn: ``ovpn``), gives it
TUNNEL_CIDR, makes a UDP socket LOCAL_IP:PORT connected to PEER_IP:PORT,
adds the peer and installs KEY_B64 (a DcoKeyConfig, base64)
with its directions swapped: what netcfg's side encrypts, this side
decrypts.  Prints "ready" and keeps the socket until stdin closes, then
deletes the link.  With "tcp", it listens on LOCAL_IP:PORT instead, prints
"listening", and adds the peer with the first connection it accepts.  It uses netcfg's own codec and socket (netcfg/dco), so it
proves the two ends agree with each other and with the kernel, not only
with the spec's bytes.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import sys

from pyroute2 import IPRoute

from netcfg.dco.families import FAMILIES
from netcfg.dco.genl import GenlSocket
from netcfg.dco.keyconfig_pb import parse
from netcfg.dco.values import DataKey, PeerRequest


def swapped(key_b64: str) -> DataKey:
    msg = parse(base64.b64decode(key_b64))
    enc, dec = msg.encrypt.SerializeToString(), msg.decrypt.SerializeToString()
    msg.encrypt.ParseFromString(dec)
    msg.decrypt.ParseFromString(enc)
    return DataKey.from_wire(0, base64.b64encode(msg.SerializeToString()).decode())


def make_link(ifname: str, cidr: str, kind: str) -> int:
    # pyroute2's sync IPRoute runs its own event loop: outside asyncio.run.
    with IPRoute() as ipr:
        ipr.link("add", ifname=ifname, kind=kind)
        ifindex = ipr.link_lookup(ifname=ifname)[0]
        address, prefix = cidr.split("/")
        ipr.addr("add", index=ifindex, address=address, prefixlen=int(prefix))
        ipr.link("set", index=ifindex, state="up")
    return ifindex


async def add_peer(family, ifindex: int, sock: socket.socket, sa: bytes, peer_id: int, key_b64: str) -> None:
    genl = await GenlSocket.open(family.name)
    peer = PeerRequest.from_wire(peer_id, base64.b64encode(sa).decode(), 16, "", "")
    tcp = sock.type == socket.SOCK_STREAM
    await genl.request(*family.new_peer(ifindex, peer, sock.fileno(), tcp), "new peer")
    await genl.request(*family.new_key(ifindex, swapped(key_b64)), "new key")
    genl.close()  # the peer stays: it lives as long as the link (and, mainline, our socket)


def main(family_name, ifname, local_ip, peer_ip, port, peer_id, cidr, key_b64, transport="udp") -> None:
    family = FAMILIES[family_name]
    ifindex = make_link(ifname, cidr, family.link_kind)
    socks = []
    try:
        if transport == "tcp":
            server = socket.create_server((local_ip, int(port)))
            socks.append(server)
            print("listening", flush=True)
            sock, (ip, remote_port) = server.accept()
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((local_ip, int(port)))
            sock.connect((peer_ip, int(port)))
            ip, remote_port = peer_ip, int(port)
        socks.append(sock)
        sa = (socket.AF_INET.to_bytes(2, sys.byteorder) + remote_port.to_bytes(2, "big")
              + socket.inet_aton(ip) + bytes(8))
        asyncio.run(add_peer(family, ifindex, sock, sa, int(peer_id), key_b64))
        print("ready", flush=True)
        sys.stdin.read()  # the test closes our stdin when it is done
    finally:
        for s in socks:
            s.close()
        with IPRoute() as ipr:
            ipr.link("del", index=ifindex)


if __name__ == "__main__":
    main(*sys.argv[1:])
