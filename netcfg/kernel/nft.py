"""An nftables table of our own, as a kernel object: replaced whole, removed whole.

Identity: (family, name), the kernel's own key.  netcfg touches no other
table: every command names this one, and `flush table` / `delete table`
act on it alone.

No `owner` flag, on purpose.  firewalld creates its table with
`flags owner` (the kernel deletes such a table when the creating netlink
socket closes, and refuses changes from anyone else).  For a kill switch
that is the wrong way round: if the service is SIGKILLed the table would
go with its socket and traffic would flow again, where the kernel must
keep blocking until a restart takes over (docs/leak-protection.md).  The
`persist` flag that lets an owned table outlive its owner needs
nftables >= 1.0.10 and Linux >= 6.9; Debian 12 has 1.0.6 and 6.1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from errno import ENOENT

from ..errors import KernelRefused
from .libnft import Nft
from .nftscript import script
from .nftspec import Present, TableContent, delete_commands, replace_commands

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Counter:
    packets: int
    bytes: int


@dataclass(frozen=True)
class NftTable:
    family: str = "inet"
    name: str = "netcfg"

    def __str__(self) -> str:
        return f"nftables table {self.family} {self.name}"

    async def replace(self, nft: Nft, content: TableContent) -> None:
        """Make the table hold exactly `content`, in one transaction (created if absent)."""
        await nft.call(self._replace_sync, nft, content)
        log.debug("replaced %s: %d chains, %d rules", self, len(content.chains), content.rule_count())

    def _replace_sync(self, nft: Nft, content: TableContent) -> None:
        # On the nft thread: nothing of ours interleaves.  What the table
        # holds is what this context last put there; it is read from the
        # kernel only when unknown (the first replace, e.g. adopting the
        # table a previous run left) or when a batch built on it is refused
        # (someone else changed the table): listing it costs as much as
        # the replace itself.
        present = nft.known.get(self)
        if present is not None:
            try:
                self._run_replace(nft, content, present)
                nft.known[self] = Present.of(content)
                return
            except KernelRefused as e:
                log.info("%s changed behind our back (%s); reading it again", self, e)
        present = Present.from_listing(self._list_sync(nft))
        self._run_replace(nft, content, present)
        nft.known[self] = Present.of(content)

    def _run_replace(self, nft: Nft, content: TableContent, present: Present) -> None:
        # As text, not JSON: a split-tunnelling rule (`socket cgroupv2`) has
        # no JSON form, and one batch is one language (kernel/nftscript.py).
        nft.execute_script("replace", self, script(replace_commands(self.family, self.name, content, present)))

    async def remove(self, nft: Nft) -> None:
        """Delete the table; already gone counts as done."""
        nft.known.pop(self, None)
        try:
            await nft.run("delete", self, delete_commands(self.family, self.name))
        except KernelRefused as e:
            if e.errno != ENOENT:
                raise
        log.debug("removed %s", self)

    async def exists(self, nft: Nft) -> bool:
        return bool(await nft.call(self._list_sync, nft))

    async def counters(self, nft: Nft) -> dict[str, Counter]:
        """The table's named counters; empty if the table does not exist."""
        items = await nft.call(self._list_sync, nft, "counters")
        return {i["counter"]["name"]: Counter(i["counter"]["packets"], i["counter"]["bytes"])
                for i in items if "counter" in i}

    def _list_sync(self, nft: Nft, what: str = "table") -> list[dict]:
        """`list table` (or `list counters table`) items; [] if there is no table."""
        if what == "table":
            command = {"list": {"table": {"family": self.family, "name": self.name}}}
        else:
            command = {"list": {"counters": {"family": self.family, "table": self.name}}}
        try:
            return [i for i in nft.execute("list", self, [command]) if "metainfo" not in i]
        except KernelRefused as e:
            if e.errno == ENOENT:
                return []
            raise
