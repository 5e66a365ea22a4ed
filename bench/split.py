#!/usr/bin/env python3
"""Split tunnelling's cost: connection set-up through the marking rules.  As root:

    scripts/bench.sh                    (runs this after bench/leak.py)
    .venv/bin/python bench/split.py [--conns 1000] [--reps 15]

One run, alternating, the same network (tests/support/splitlab.py: a
client namespace, a router behind its uplink, a veth "tunnel"), the same
prober process opening `--conns` TCP connections at once to the router and
timing until every handshake is done:

* **baseline**: no split-tunnelling table and rules, no VPN routes: the
  connections take the uplink directly;
* **marked**: the VPN redirects the default route, the prober is placed in
  the bypass group, and every packet goes through the marking rules
  (`socket cgroupv2`, mark, reroute by policy rule, masquerade) to reach
  the same router by the same uplink.

Reports median (min, p90) seconds per burst for each and the ratio
marked/baseline; writes bench/results/split.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

import common

sys.path.insert(0, str(common.REPO))
from netcfg.split.placements import Mode  # noqa: E402
from support.leaklab import OUTSIDE4, LeakLab  # noqa: E402
from support.netns import Netns  # noqa: E402
from support.splitlab import PORT, SplitLab  # noqa: E402

RESULTS = common.REPO / "bench" / "results" / "split.json"


async def burst(prober, conns: int) -> float:
    # A burst's selects give up after 10 s without progress; 2 min bounds the whole.
    seconds, failed = (await prober.ask(f"burst {conns} {OUTSIDE4} {PORT}", timeout=120)).split()
    if int(failed):
        raise RuntimeError(f"{failed} of {conns} connections failed")
    return float(seconds)


async def run(conns: int, reps: int) -> dict:
    ns = Netns.create(prefix=common.NS_PREFIX)
    lab = split = None
    try:
        lab = LeakLab.build(ns)
        split = SplitLab(lab, Path(tempfile.mkdtemp(prefix="netcfg-bench-split-")))
        await split.start()
        prober = split.prober()
        times: dict[str, list[float]] = {"baseline": [], "marked": []}
        await burst(prober, conns)  # warm-up: modules loaded, caches filled
        for _ in range(reps):
            times["baseline"].append(await burst(prober, conns))
            lab.redirect()
            await split.install(split.policy())
            await split.place(prober, Mode.BYPASS)
            times["marked"].append(await burst(prober, conns))
            await split.place(prober, None)
            await split.teardown()
            lab.unredirect()
            await split.placements.start()
        return times
    finally:
        if split is not None:
            await split.teardown()
            await split.nl.close()
            split.close()
        if lab is not None:
            lab.delete()
        ns.delete()


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"median_s": statistics.median(values), "min_s": ordered[0],
            "p90_s": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], "all_s": values}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    times = asyncio.run(run(args.conns, args.reps))
    result = {k: summary(v) for k, v in times.items()}
    result["ratio_marked_to_baseline"] = result["marked"]["median_s"] / result["baseline"]["median_s"]
    result["connections"] = args.conns
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"{args.conns} parallel TCP connections, {args.reps} bursts each, alternating:")
    for k in ("baseline", "marked"):
        r = result[k]
        print(f"  {k:9} median {r['median_s'] * 1000:7.1f} ms  (min {r['min_s'] * 1000:.1f}, p90 {r['p90_s'] * 1000:.1f})")
    print(f"  marked / baseline: {result['ratio_marked_to_baseline']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
