"""Helpers of the DCO tests: key configs, sockets in a namespace, the far end."""

from __future__ import annotations

import asyncio
import base64
import ctypes
import os
import socket
import struct
import sys
import threading
from pathlib import Path

from netcfg.dco.keyconfig_pb import DcoKeyConfig

HERE = Path(__file__).resolve().parent
CLONE_NEWNET = 0x40000000
PORT = 1194
PEER_ID = 1


def key_config(key_id: int = 0, peer_id: int = PEER_ID, cipher: int = 1, size: int = 16) -> str:
    """A DcoKeyConfig as the client sends it (base64), distinct keys per direction."""
    msg = DcoKeyConfig(key_id=key_id, remote_peer_id=peer_id, cipher_alg=cipher)
    for name, seed in (("encrypt", 0x00), ("decrypt", 0x40)):
        d = getattr(msg, name)
        d.cipher_key = bytes(range(seed, seed + size))
        d.nonce_tail = bytes(range(seed + 0xA0, seed + 0xA8))
        d.cipher_key_size = size
    return base64.b64encode(msg.SerializeToString()).decode()


def sockaddr_b64(ip: str, port: int = PORT) -> str:
    raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(ip) + bytes(8)
    return base64.b64encode(raw).decode()


def in_netns(netns: str, fn):
    """fn() in a short-lived thread that entered namespace `netns` (setns is
    per thread): the sockets, links and netlink requests it makes are that
    namespace's, and sockets keep theirs after the thread ends."""
    out: dict = {}

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            out["result"] = fn()
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("result")


def udp_socket_in(netns: str, local: str, remote: str, port: int = PORT, tcp: bool = False) -> socket.socket:
    """A UDP socket of namespace `netns` bound to local:port and connected to
    remote:port.  `tcp`: a TCP connection from an ephemeral port of `local`
    to remote:port instead."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        s.bind((local, 0 if tcp else port))
        s.connect((remote, port))
        return s

    return in_netns(netns, make)


class FarEnd:
    """tests/dco/dco_peer.py running in another namespace."""

    def __init__(self, proc) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, netns, family, ifname: str, local: str, remote: str, cidr: str, key_b64: str,
                    transport: str = "udp") -> "FarEnd":
        """`family`: the codec (netcfg.dco.families) the far end speaks.  With
        transport "udp" it is ready on return; with "tcp" it listens on
        local:PORT, and is ready (wait_ready) once it accepted a connection."""
        env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))
        proc = await asyncio.create_subprocess_exec(
            *netns.argv([sys.executable, str(HERE / "dco_peer.py"), family.name, ifname, local, remote, str(PORT),
                         str(PEER_ID), cidr, key_b64, transport]),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        self = cls(proc)
        await self.wait_ready(b"listening" if transport == "tcp" else b"ready")
        return self

    async def wait_ready(self, word: bytes = b"ready") -> None:
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if line.strip() != word:
            self.proc.kill()
            err = await self.proc.stderr.read()
            raise RuntimeError(f"far end did not start: {line!r} {err.decode(errors='replace')}")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
