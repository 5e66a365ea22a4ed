"""One device's data channel offload: its kernel link, generic-netlink
socket, the pipe to its client, and the transport sockets it was given.

EnableDCO makes a DcoChannel; the /dco object's methods (bus/dco.py) call
it; the device's teardown closes it, which deletes the link (and with it
the peer and its keys).  The link is in a ledger of its own, journaled
before it is created, so a crash of the service leaves nothing behind
either (registry.recover).  Unlike the original, each request waits for
the kernel's answer, so a refused peer or key is the caller's error reply
instead of a worker thread that stops for good (spec 11 [quirk]).
"""

from __future__ import annotations

import errno
import logging
import os
import socket

from ..errors import InvalidArgument, KernelRefused, StateError
from ..kernel.ledger import Ledger
from ..kernel.link import TunLink, lookup
from ..kernel.netlink import Netlink
from .families import PeerGone, pipe_datagram
from .genl import GenlSocket
from .probe import available_family
from .values import DataKey, PeerRequest, check_peer_id

log = logging.getLogger(__name__)

IFNAMSIZ = 16
MAX_KEEPALIVE = 86400  # seconds; newer mainline kernels' cap (6.17 has none), applied to both families


def check_ifname(name: str) -> str:
    """What the kernel would refuse (dev_valid_name), said before asking it."""
    if not name or len(name.encode()) >= IFNAMSIZ or name in (".", "..") or any(c in name for c in "/: \t\n"):
        raise InvalidArgument(f"Error creating ovpn-dco device: '{name[:64]}' is not a valid interface name "
                              f"(1-{IFNAMSIZ - 1} characters, no '/', ':' or spaces)")
    return name


class DcoChannel:
    def __init__(self, family, link: TunLink, ledger: Ledger) -> None:
        self.family, self.link, self.ledger = family, link, ledger
        self.genl: GenlSocket | None = None
        self.client_end, self.our_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.our_end.setblocking(False)
        self.transports: dict[int, int] = {}  # peer id -> our dup of its transport socket
        self.closed = False

    @classmethod
    async def create(cls, nl: Netlink, journal, key: str, ifname: str) -> "DcoChannel":
        """Resolve the family, create the link, join the notifications; all or nothing."""
        check_ifname(ifname)
        try:
            family = await available_family()
        except KernelRefused as e:
            raise KernelRefused("Error initializing GeNL:", "DCO families", e.errno, e.extack) from None
        if family is None:
            raise StateError("Error creating ovpn-dco device: this kernel has no data channel offload "
                             "(neither the ovpn-dco-v2 nor the ovpn module); DcoAvailable says so")
        # Journaled before it exists, by name (its index is the kernel's to
        # choose); the index is journaled as soon as it is known, and from
        # then on a delete checks index, name and kind (kernel/link.py).
        link = TunLink(0, ifname, family.link_kind)
        self = cls(family, link, Ledger(journal.new_key(f"{key}.dco"), nl, journal))
        try:
            await self.ledger.apply([link])
            self.link = TunLink(await lookup(nl, ifname, family.link_kind), ifname, family.link_kind)
            await self.ledger.learn(link, self.link)
            self.genl = await GenlSocket.open(family.name, "peers", self._on_notification)
        except BaseException:
            errors = await self.close()
            if errors:
                log.warning("DCO device %s: cleaning up after a failed EnableDCO: %s", ifname,
                            "; ".join(map(str, errors)))
            raise
        log.info("DCO device %s created (%s, ifindex %d)", ifname, family.name, self.ifindex)
        return self

    @property
    def ifindex(self) -> int:
        return self.link.ifindex

    # -- the client's pipe --

    def take_pipe_fd(self) -> int:
        """Our copy of the client's end, for the reply to send and close (the
        original's GetPipeFD works once too; later calls get a clear error)."""
        if self.closed:
            raise StateError("GetPipeFD: the DCO device is gone")
        if self.client_end is None:
            raise StateError("GetPipeFD: the pipe was handed out already")
        fd = self.client_end.detach()
        self.client_end = None
        return fd

    def _on_notification(self, cmd: int, payload: bytes) -> None:
        gone = self.family.peer_gone(cmd, payload)
        if gone is None or gone.ifindex != self.ifindex:
            return  # the group is per namespace: other devices' peers, other commands
        log.info("DCO device %s: peer %d deleted by the kernel (reason %d)", self.link.ifname, gone.peer_id, gone.reason)
        self._release_transport(gone.peer_id)
        self._tell_client(gone)

    def _tell_client(self, gone: PeerGone) -> None:
        try:
            self.our_end.send(pipe_datagram(self.family, gone))
        except OSError as e:  # the client closed its end, or does not read: it is its loss
            log.warning("DCO device %s: pipe to the client: %s", self.link.ifname, os.strerror(e.errno or 0))

    # -- kernel requests (the /dco object's methods) --

    async def new_peer(self, req: PeerRequest, fd: int | None) -> None:
        if fd is None:
            raise InvalidArgument("NewPeer: no transport socket was attached to the call")
        tcp = _check_transport(fd, req) == socket.SOCK_STREAM
        ours = os.dup(fd)  # the kernel (mainline) relies on the sender keeping its fd open
        try:
            await self._request(self.family.new_peer(self.ifindex, req, ours, tcp), f"NewPeer {req.peer_id}")
        except BaseException:
            os.close(ours)
            raise
        # P2P: the new peer replaced any earlier one, and with it its socket.
        for peer_id in list(self.transports):
            self._release_transport(peer_id)
        self.transports[req.peer_id] = ours

    async def new_key(self, key: DataKey) -> None:
        await self._request(self.family.new_key(self.ifindex, key), f"NewKey slot {key.slot} of peer {key.peer_id}")

    async def swap_keys(self, peer_id: int) -> None:
        await self._request(self.family.swap_keys(self.ifindex, check_peer_id(peer_id)), f"SwapKeys of peer {peer_id}")

    async def set_peer(self, peer_id: int, interval: int, timeout: int) -> None:
        for name, value in (("keepalive_interval", interval), ("keepalive_timeout", timeout)):
            if value > MAX_KEEPALIVE:
                raise InvalidArgument(f"SetPeer: {name} {value} is over {MAX_KEEPALIVE} seconds")
        await self._request(self.family.set_peer(self.ifindex, check_peer_id(peer_id), interval, timeout),
                            f"SetPeer {peer_id}")

    async def _request(self, message: tuple[int, bytes], what: str) -> list[bytes]:
        if self.closed or self.genl is None:
            raise StateError(f"{what}: the DCO device is gone")
        cmd, payload = message
        try:
            return await self.genl.request(cmd, payload, f"{what} on {self.link.ifname}")
        except KernelRefused as e:
            if e.errno == errno.ENODEV:
                raise StateError(f"{what}: DCO device {self.link.ifname} no longer exists") from None
            raise

    def _release_transport(self, peer_id: int) -> None:
        fd = self.transports.pop(peer_id, None)
        if fd is not None:
            os.close(fd)

    # -- teardown --

    async def close(self) -> list[Exception]:
        """Delete the link (the kernel drops its peer and keys with it), then
        close our sockets.  Never raises; returns what the kernel refused."""
        if self.closed:
            return []
        self.closed = True
        try:
            return await self.ledger.undo()
        finally:  # whatever the kernel said: no socket or fd of this device outlives it
            if self.genl is not None:
                self.genl.close()
            for peer_id in list(self.transports):
                self._release_transport(peer_id)
            for end in (self.client_end, self.our_end):
                if end is not None:
                    end.close()
            self.client_end = None


def _check_transport(fd: int, req: PeerRequest) -> int:
    """The fd must be a UDP or TCP socket of the remote's family: the kernel
    looks it up in *our* fd table, so anything else would be refused late,
    or (a TCP socket not connected) fail at the first packet.  Returns its
    type (SOCK_DGRAM or SOCK_STREAM)."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        raise InvalidArgument("NewPeer: the attached fd is not a socket") from None
    with sock:
        kind, family = sock.type, sock.family
    want = socket.AF_INET if req.remote.ip.version == 4 else socket.AF_INET6
    if kind not in (socket.SOCK_DGRAM, socket.SOCK_STREAM) or family not in (socket.AF_INET, socket.AF_INET6):
        raise InvalidArgument("NewPeer: the attached fd is not a UDP or TCP socket")
    if family != want and not (family == socket.AF_INET6 and want == socket.AF_INET):
        raise InvalidArgument(f"NewPeer: the transport socket's family does not match the remote {req.remote.ip}")
    return kind
