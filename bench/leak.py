#!/usr/bin/env python3
"""Leak protection's cost: what applying and replacing its rules adds to Establish.  As root:

    scripts/bench.sh                    (runs this after bench/run.py)
    .venv/bin/python bench/leak.py [--reps 200] [--cycles 30] [--check]

Measured in one run, alternating, so a burst of load hits every side:

1. **Establish without protection** (the baseline): through the service on a
   private bus, a device with an address and redirect-gateway
   (reroute_ipv4), CreateVirtualInterface .. Establish .. Destroy; the
   Establish round trip is timed.
2. **The rules**, through netcfg.kernel.nft + netcfg.leak.rules in a fresh
   namespace: *apply* (the table absent -> the full rule set: what the first
   protected Establish adds), *replace* (the table present -> a new tunnel
   set: what each later Establish or Destroy adds), *counters* (one read),
   *remove*.
3. **The event loop while rules are replaced**: a 1 ms ticker runs during
   the replaces and during as long an idle period; its worst lateness in
   each shows whether libnftables' blocking calls reach the loop (they run
   on their own thread).

Target: apply and replace each add < 5 ms (median) to an Establish.
Writes bench/results/leak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from dbus_fast import Variant
from dbus_fast.aio import MessageBus

import common
from common import IFACE, PROPS, call, new_device

sys.path.insert(0, str(common.REPO))
from netcfg.kernel.libnft import Nft  # noqa: E402
from netcfg.kernel.nft import NftTable  # noqa: E402
from netcfg.leak.rules import LeakRules, ruleset  # noqa: E402
from support.nsenter import enter  # noqa: E402

TARGET_MS = 5.0
DEFAULT_JSON = common.REPO / "bench" / "results" / "leak.json"


async def establish_cycle(bus: MessageBus) -> float:
    """One protected-looking client cycle; seconds of its Establish."""
    path = await new_device(bus)
    await call(bus, path, "Set", "ssv", [IFACE, "reroute_ipv4", Variant("b", True)], PROPS)
    t0 = time.perf_counter()
    reply = await call(bus, path, "Establish")
    elapsed = time.perf_counter() - t0
    os.close(reply.unix_fds[0])
    await call(bus, path, "Destroy")
    return elapsed


def policies(i: int) -> LeakRules:
    """What consecutive Establishes change: the set of live tunnels."""
    return LeakRules(tunnels=frozenset({10 + i % 3, 20}), marks=frozenset({0x4F56}),
                     uplinks=frozenset({"uplink0"}))


async def rule_costs(nft: Nft, reps: int, samples: dict[str, list]) -> None:
    table = NftTable()
    for i in range(reps):
        t0 = time.perf_counter()
        await table.replace(nft, ruleset(policies(i)))
        t1 = time.perf_counter()
        await table.replace(nft, ruleset(policies(i + 1)))
        t2 = time.perf_counter()
        await table.counters(nft)
        t3 = time.perf_counter()
        await table.remove(nft)
        t4 = time.perf_counter()
        for key, value in zip(("apply", "replace", "counters", "remove"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            samples.setdefault(key, []).append(value)


async def loop_lateness(work, seconds_hint: float | None = None) -> tuple[float, float]:
    """Worst lateness (s) of a 1 ms ticker while `work()` runs (or for
    `seconds_hint` idle seconds when work is None); and the time it ran."""
    worst, stop = 0.0, asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - t - 0.001)

    task = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    if work is not None:
        await work()
    else:
        await asyncio.sleep(seconds_hint)
    elapsed = time.perf_counter() - t0
    stop.set()
    await task
    return worst, elapsed


async def bench(env: common.Environment, args) -> dict:
    await env.start()
    env.ns.add_uplink()
    rules_ns = env.fresh_netns()
    nft = Nft(thread_init=lambda: enter(rules_ns.name))
    bus = await MessageBus(bus_address=env.bus.address, negotiate_unix_fd=True).connect()
    try:
        await establish_cycle(bus)  # warm-up
        await rule_costs(nft, 3, {})
        establish, samples = [], {}
        for _ in range(args.cycles):  # alternate: baseline, rules, baseline, ...
            establish.append(await establish_cycle(bus))
            await rule_costs(nft, max(1, args.reps // args.cycles), samples)
        costs = {k: common.summary(v) for k, v in samples.items()}

        async def replaces() -> None:
            table = NftTable()
            for i in range(args.reps):
                await table.replace(nft, ruleset(policies(i)))
            await table.remove(nft)

        busy, busy_s = await loop_lateness(replaces)
        idle, _ = await loop_lateness(None, busy_s)
    finally:
        bus.disconnect()
        nft.close()
    base = common.summary(establish)
    added = max(costs["apply"]["median"], costs["replace"]["median"])
    return {
        "establish_without_protection": base,
        "rules": costs,
        "added_ms": added * 1e3,
        "ratio_with_rules": (base["median"] + added) / base["median"],
        "loop_lateness_ms": {"during_replaces": busy * 1e3, "idle": idle * 1e3, "replaces": args.reps,
                             "seconds": busy_s},
        "target": {"max_added_ms": TARGET_MS, "pass": added * 1e3 < TARGET_MS},
    }


def report(res: dict) -> str:
    def ms(s: dict) -> str:
        return f"{s['median'] * 1e3:7.2f} ({s['min'] * 1e3:6.2f}, p99 {s['p99'] * 1e3:6.2f})"

    lines = [f"leak protection bench {res['date']}  {res['host']}  load {res['load_before']} -> {res['load_after']}",
             "", "median (min, p99) ms",
             f"Establish without protection (baseline) {ms(res['establish_without_protection'])}"]
    for key, label in (("apply", "apply: table absent -> full rule set"), ("replace", "replace: new tunnel set"),
                       ("counters", "read the drop counters"), ("remove", "remove the table")):
        lines.append(f"{label:39} {ms(res['rules'][key])}")
    lat = res["loop_lateness_ms"]
    lines += [f"added to Establish: {res['added_ms']:.2f} ms (Establish x{res['ratio_with_rules']:.3f}); "
              f"target < {TARGET_MS:g} ms: {'PASS' if res['target']['pass'] else 'FAIL'}",
              f"event loop, worst lateness of a 1 ms ticker: {lat['during_replaces']:.2f} ms during "
              f"{lat['replaces']} replaces ({lat['seconds']:.2f} s), {lat['idle']:.2f} ms idle"]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=200, help="rule apply/replace repetitions (default 200)")
    p.add_argument("--cycles", type=int, default=30, help="Establish cycles, interleaved (default 30)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = p.parse_args()
    if os.geteuid() != 0:
        p.error("run as root (namespaces, a system-type bus, the service)")
    common.raise_on_signals()
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = datetime.now(timezone.utc).astimezone()
    env = common.Environment()
    try:
        res = asyncio.run(bench(env, args))
    except common.Interrupted as e:
        print(f"bench: {e}, cleaning up", file=sys.stderr)
        return 128 + e.signum
    finally:
        env.close()
    res = {"date": started.isoformat(timespec="seconds"), "host": f"{platform.node()} {platform.release()}",
           "cpus": os.cpu_count(), "load_before": load_before,
           "load_after": [round(x, 2) for x in os.getloadavg()], **res}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    print(report(res))
    print(f"\nJSON: {args.json}")
    return 1 if args.check and not res["target"]["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
