#!/usr/bin/env python3
"""The journal's cost on the event loop, here and in an older commit, in one run.

    .venv/bin/python bench/journal.py [--against REF] [--routes 10000] [--reps 15]

What is journaled is what an Establish of N routes writes: a tun link, two
addresses and N routes (`198.18.x.y/32 via 10.8.0.1`), through the
service's own Ledger (`ledger.record`) into a Journal in a fresh directory
under --dir (default /var/tmp: on disk, as --state-dir is).  Each tree runs
in a process of its own (PYTHONPATH = the tree; REF is written out with
`git archive`), the two alternating rep by rep.  Per rep:

* loop blocked: the longest stretch during the write in which the event
  loop ran nothing else (a ticker task on the same loop measures how late
  it is woken; sync code blocks it for the whole write);
* written: from the call until it returned, the file on disk (with an
  fsync where the tree does one).

Medians (min) in ms.  The target (issue 15): loop blocked under 20 ms at
10,000 routes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGET_MS = 20.0

PROBE = r"""
import asyncio, inspect, json, socket, sys, tempfile, time
from ipaddress import IPv4Address
from netcfg.kernel.address import AddressOnLink, TunnelAddress
from netcfg.kernel.ledger import Ledger
from netcfg.kernel.link import TunLink
from netcfg.kernel.route import Route
from netcfg.state import Journal

n, directory = int(sys.argv[1]), sys.argv[2]
objs = [TunLink(7, "tun0"), AddressOnLink(7, TunnelAddress("10.8.0.2", 24, "10.8.0.1", False)),
        AddressOnLink(7, TunnelAddress("fd00:8::2", 64, "fd00:8::1", True))]
objs += [Route(socket.AF_INET, str(IPv4Address(0xC6120000 + i)), 32, 7, "10.8.0.1", None) for i in range(n)]

async def main():
    journal = Journal(tempfile.mkdtemp(dir=directory))
    key = journal.new_key("bench") if hasattr(journal, "new_key") else "bench"
    ledger = Ledger(key, None, journal)
    gaps, running = [], True

    async def ticker():
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    gaps.clear()
    t0 = time.perf_counter()
    result = ledger.record(list(objs))
    if inspect.isawaitable(result):
        await result
    written = time.perf_counter() - t0
    running = False
    await task
    if hasattr(journal, "close"):
        journal.close()
    print(json.dumps({"blocked": max(gaps), "written": written}))

asyncio.run(main())
"""


def probe(tree: Path, n: int, directory: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run([sys.executable, "-c", PROBE, str(n), directory], env=env, capture_output=True,
                       text=True, cwd=directory)
    if r.returncode:
        raise RuntimeError(f"journal probe in {tree} failed:\n{r.stderr}")
    return json.loads(r.stdout)


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "values": values}


def main() -> int:
    sys.path.insert(0, str(HERE))
    import common

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", metavar="REF", help="also measure this commit (e.g. main, HEAD~5)")
    p.add_argument("--routes", type=int, default=10_000)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--dir", default="/var/tmp", help="where the journals go (default /var/tmp)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="netcfg-journal-bench-", dir=args.dir) as work:
        trees = {"this checkout": REPO}
        if args.against:
            commit = common.export_tree(args.against, Path(work) / "against")
            trees[f"{args.against} ({commit})"] = Path(work) / "against"
        samples = {name: {"blocked": [], "written": []} for name in trees}
        for _ in range(args.reps):
            for name, tree in trees.items():
                result = probe(tree, args.routes, work)
                for k in ("blocked", "written"):
                    samples[name][k].append(result[k] * 1e3)
    results = {name: {k: summary(v) for k, v in s.items()} for name, s in samples.items()}
    print(f"journal of an Establish of {args.routes:,} routes, {args.reps} reps: median (min) ms")
    print(f"{'tree':<28} | {'loop blocked':>16} | {'written':>16}")
    for name, r in results.items():
        b, w = r["blocked"], r["written"]
        print(f"{name:<28} | {b['median']:8.1f} ({b['min']:5.1f}) | {w['median']:8.1f} ({w['min']:5.1f})")
    ours = results["this checkout"]["blocked"]["median"]
    print(f"target: loop blocked under {TARGET_MS:g} ms: {ours:.1f} ms  {'PASS' if ours < TARGET_MS else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps({"routes": args.routes, "reps": args.reps, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
