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


def udp_socket_in(netns: str, local: str, remote: str, port: int = PORT) -> socket.socket:
    """A UDP socket of namespace `netns` (sockets keep the namespace they were
    made in; setns is per thread, so a short-lived thread makes it)."""
    out: dict = {}

    def make() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((local, port))
            s.connect((remote, port))
            out["sock"] = s
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["sock"]


class FarEnd:
    """tests/dco/dco_peer.py running in another namespace."""

    def __init__(self, proc) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, netns, family, ifname: str, local: str, remote: str, cidr: str, key_b64: str) -> "FarEnd":
        """`family`: the codec (netcfg.dco.families) the far end speaks."""
        env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))
        proc = await asyncio.create_subprocess_exec(
            *netns.argv([sys.executable, str(HERE / "dco_peer.py"), family.name, ifname, local, remote, str(PORT),
                         str(PEER_ID), cidr, key_b64]),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            err = await proc.stderr.read()
            raise RuntimeError(f"far end did not start: {line!r} {err.decode(errors='replace')}")
        return cls(proc)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
