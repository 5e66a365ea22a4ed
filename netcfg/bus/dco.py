"""DCO objects <device path>/dco (spec 1.4, 11): the kernel data channel.

Made by the device's EnableDCO and removed with the device.  Unlike the
original, whose Authorize() lets anyone the D-Bus policy admits load keys
into any device, only the device's creating process or root may call them
(the device's own rule).  Values are checked by netcfg/dco/values.py as
the call arrives; the kernel's verdict is the reply.
"""

from __future__ import annotations

from ..dco.values import DataKey, PeerRequest
from ..session import Session
from . import INTERFACE
from .dispatch import Call, FdReply
from .members import LOG_SIGNAL, NETWORK_CHANGE_SIGNAL, Method, Policy

OWNER = Policy.OWNER_OR_ROOT


class DcoFace:
    interface = INTERFACE
    methods = {m.name: m for m in (
        Method("NewPeer", OWNER, "u:peer_id s:sa u:salen s:vpn4 s:vpn6", fd_in=True),
        Method("GetPipeFD", OWNER, fd_out=True),
        Method("NewKey", OWNER, "u:key_slot s:key_config"),
        Method("SwapKeys", OWNER, "u:peer_id"),
        Method("SetPeer", OWNER, "u:peer_id u:keepalive_interval u:keepalive_timeout"),
    )}
    properties: dict = {}
    signals = (LOG_SIGNAL, NETWORK_CHANGE_SIGNAL)  # declared as in the original; only Log is sent

    def __init__(self, session: Session) -> None:
        self.session = session
        self.path = session.dco_path

    def owner(self):
        return self.session.owner

    async def NewPeer(self, call: Call, peer_id: int, sa: str, salen: int, vpn4: str, vpn6: str):
        request = PeerRequest.from_wire(peer_id, sa, salen, vpn4, vpn6)
        await self.session.dco_channel().new_peer(request, call.fd)

    async def GetPipeFD(self, call: Call):
        return FdReply([], self.session.dco_channel().take_pipe_fd())

    async def NewKey(self, call: Call, key_slot: int, key_config: str):
        await self.session.dco_channel().new_key(DataKey.from_wire(key_slot, key_config))

    async def SwapKeys(self, call: Call, peer_id: int):
        await self.session.dco_channel().swap_keys(peer_id)

    async def SetPeer(self, call: Call, peer_id: int, keepalive_interval: int, keepalive_timeout: int):
        await self.session.dco_channel().set_peer(peer_id, keepalive_interval, keepalive_timeout)
