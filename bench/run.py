#!/usr/bin/env python3
"""netcfg benchmarks: routes at scale, call latency, memory.  As root:

    scripts/bench.sh [--sizes 0,100,1000,10000] [--reps 5] [--calls 2000] [--against REF] [--check]

1. For each N: AddNetworks (one call, N routes), Establish, Destroy through
   the service on a private bus, and `ip -batch` adding the same N routes in
   a fresh namespace (the baseline), interleaved rep by rep.
2. Round trip of Properties.Get(version) and Peer.Ping on the manager.
3. The service's VmRSS idle after start and after each largest-N cycle.

With --against REF, the service of commit REF (written out with git
archive) runs too, on a bus and in a namespace of its own, and its
AddNetworks/Establish/Destroy cycle alternates with ours rep by rep: the
regression check (Establish at 10,000 routes within 5% of REF's, issue 15)
is measured in the same run, under the same load.

Prints a table, writes JSON (bench/results/latest.json by default).  The
targets (Establish at 10,000 routes within 2x of ip -batch; within 5% of
REF's) are reported as PASS/FAIL; only --check turns a FAIL into exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from dbus_fast.aio import MessageBus

import common
from common import IFACE, MANAGER, PEER, PROPS, call, new_device

TARGET_N, TARGET_RATIO = 10_000, 2.0
AGAINST_RATIO = 1.05  # Establish at TARGET_N: at most 5% slower than the commit compared against
DEFAULT_JSON = common.REPO / "bench" / "results" / "latest.json"


async def service_cycle(env: common.Environment, bus: MessageBus, nets: list, n: int) -> dict:
    """One create/AddNetworks/Establish/Destroy cycle; kernel state checked outside the timed parts."""
    if not env.service.alive():
        raise RuntimeError(f"the service exited with {env.service.returncode}")
    pid = env.service.pid
    path = await new_device(bus)
    t0 = time.perf_counter()
    await call(bus, path, "AddNetworks", "a(suibb)", [nets])
    t1, cpu1 = time.perf_counter(), common.cpu_seconds(pid)
    reply = await call(bus, path, "Establish")
    t2, cpu2 = time.perf_counter(), common.cpu_seconds(pid)
    fd = reply.unix_fds[0]  # dbus-fast hands us the fd; we own it
    try:
        if (got := common.count_routes(env.ns.name)) != n:
            raise RuntimeError(f"after Establish: {got} routes in the kernel, wanted {n}")
        t3 = time.perf_counter()
        await call(bus, path, "Destroy")
        t4 = time.perf_counter()
    finally:
        os.close(fd)
    if (got := common.count_routes(env.ns.name)) or common.tun_links(env.ns.name):
        raise RuntimeError(f"after Destroy: {got} routes / tun links {common.tun_links(env.ns.name)} left")
    return {"add_networks": t1 - t0, "establish": t2 - t1, "destroy": t4 - t3,
            "establish_cpu_user": cpu2[0] - cpu1[0], "establish_cpu_sys": cpu2[1] - cpu1[1]}


async def route_cycles(env: common.Environment, bus: MessageBus, n: int, reps: int, against=None) -> dict:
    """`reps` service cycles, each followed by the same cycle of the service
    compared against (`against`: its environment and connection), if any,
    and an ip -batch run."""
    nets, pid = common.networks(n), env.service.pid
    times = {k: [] for k in ("add_networks", "establish", "destroy", "ip_batch",
                             "establish_cpu_user", "establish_cpu_sys", "ip_batch_cpu_user", "ip_batch_cpu_sys")}
    theirs = {k: [] for k in ("add_networks", "establish", "destroy", "establish_cpu_user", "establish_cpu_sys")}
    rss_after = []
    for _ in range(reps):
        for k, v in (await service_cycle(env, bus, nets, n)).items():
            times[k].append(v)
        if against is not None:
            for k, v in (await service_cycle(*against, nets, n)).items():
                if k in theirs:
                    theirs[k].append(v)
        wall, user, system = common.ip_batch(env, n)
        times["ip_batch"].append(wall)
        times["ip_batch_cpu_user"].append(user)
        times["ip_batch_cpu_sys"].append(system)
        rss_after.append(common.proc_status_kib(pid, "VmRSS"))
    result = {"n": n, **{k: common.summary(v) for k, v in times.items()}, "rss_after_kib": rss_after}
    result["ratio"] = result["establish"]["median"] / result["ip_batch"]["median"]
    if against is not None:
        result["against"] = {k: common.summary(v) for k, v in theirs.items()}
        result["vs_against"] = result["establish"]["median"] / result["against"]["establish"]["median"]
    cpu = [statistics.median(map(sum, zip(times[f"{k}_cpu_user"], times[f"{k}_cpu_sys"])))
           for k in ("establish", "ip_batch")]
    # /proc/PID/stat counts 10 ms ticks: below ~50 ms a ratio says nothing.
    result["cpu_ratio"] = cpu[0] / cpu[1] if min(cpu) >= 0.05 else None
    return result


async def latency(bus: MessageBus, calls: int, warmup: int) -> dict:
    """Round trip of two trivial calls, one at a time, in microseconds."""
    kinds = {
        "Properties.Get(version)": (MANAGER, "Get", "ss", [IFACE, "version"], PROPS),
        "Peer.Ping": (MANAGER, "Ping", "", [], PEER),
    }
    out = {}
    for label, (path, member, sig, body, iface) in kinds.items():
        for _ in range(warmup):
            await call(bus, path, member, sig, body, iface)
        samples = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            await call(bus, path, member, sig, body, iface)
            samples.append((time.perf_counter_ns() - t0) / 1000)
        out[label] = common.summary(samples)
    return out


async def bench(env: common.Environment, args, old: common.Environment | None = None) -> dict:
    await env.start()
    if old is not None:
        await old.start()
    pid = env.service.pid
    await asyncio.sleep(1.0)  # let start-up settle
    rss_idle = common.proc_status_kib(pid, "VmRSS")
    bus = await MessageBus(bus_address=env.bus.address, negotiate_unix_fd=True).connect()
    old_bus = None
    if old is not None:
        old_bus = await MessageBus(bus_address=old.bus.address, negotiate_unix_fd=True).connect()
    try:
        lat = await latency(bus, args.calls, args.warmup)
        rss_after_latency = common.proc_status_kib(pid, "VmRSS")
        routes = []
        for n in args.sizes:
            print(f"bench: {n} routes x {args.reps} ...", file=sys.stderr, flush=True)
            routes.append(await route_cycles(env, bus, n, args.reps, (old, old_bus) if old else None))
    finally:
        bus.disconnect()
        if old_bus is not None:
            old_bus.disconnect()
    await asyncio.sleep(1.0)
    return {
        "latency_us": lat,
        "routes": routes,
        "rss_kib": {"idle_after_start": rss_idle, "after_latency": rss_after_latency,
                    "idle_at_end": common.proc_status_kib(pid, "VmRSS"),
                    "peak": common.proc_status_kib(pid, "VmHWM")},
    }


# -- report ---------------------------------------------------------------
def ms(s: dict) -> str:
    return f"{s['median'] * 1e3:9.1f} ({s['min'] * 1e3:7.1f})"


def cpu(r: dict, what: str) -> str:
    return f"{r[what + '_cpu_user']['median'] * 1e3:6.0f} + {r[what + '_cpu_sys']['median'] * 1e3:6.0f}"


def report(res: dict) -> str:
    lines = [f"netcfg bench {res['date']}  {res['host']}  {res['cpus']} CPUs  load {res['load_before']} -> "
             f"{res['load_after']}  reps {res['reps']}",
             "",
             "routes: median (min) ms; ratio = Establish median / ip -batch median",
             f"{'N':>6} | {'AddNetworks':>19} | {'Establish':>19} | {'Destroy':>19} | {'ip -batch':>19} | ratio"]
    lines.append("-" * len(lines[-1]))
    for r in res["routes"]:
        lines.append(f"{r['n']:>6} | {ms(r['add_networks'])} | {ms(r['establish'])} | {ms(r['destroy'])} | "
                     f"{ms(r['ip_batch'])} | {r['ratio']:5.2f}")
    if any("against" in r for r in res["routes"]):
        lines += ["", f"Establish against {res['against']}: median (min) ms; ratio = ours / theirs; "
                  "CPU user + system (median ms)",
                  f"{'N':>6} | {'ours':>19} | {'theirs':>19} | ratio | {'CPU ours':>15} | {'CPU theirs':>15}"]
        for r in res["routes"]:
            lines.append(f"{r['n']:>6} | {ms(r['establish'])} | {ms(r['against']['establish'])} | "
                         f"{r['vs_against']:5.2f} | {cpu(r, 'establish')} | {cpu(r['against'], 'establish')}")
        a = res["target_against"]
        if a["ratio"] is not None:
            lines.append(f"target: Establish at {TARGET_N:,} routes within {(AGAINST_RATIO - 1) * 100:g}% of "
                         f"{res['against']}: {a['ratio']:.3f}  {'PASS' if a['pass'] else 'FAIL'}")
    t = res["target"]
    if t["ratio"] is not None:
        lines.append(f"target: Establish at {TARGET_N:,} routes within {TARGET_RATIO:g}x of ip -batch: "
                     f"{t['ratio']:.2f}x  {'PASS' if t['pass'] else 'FAIL'}")
    lines += ["", "CPU time (median ms, user + system): the service during Establish, the ip process",
              f"{'N':>6} | {'Establish':>15} | {'ip -batch':>15} | ratio"]
    for r in res["routes"]:
        ratio = f"{r['cpu_ratio']:5.2f}" if r["cpu_ratio"] is not None else "    -"
        lines.append(f"{r['n']:>6} | {cpu(r, 'establish')} | {cpu(r, 'ip_batch')} | {ratio}")
    lines += ["", "round trip, one call at a time (us)",
              f"{'call':<24} | {'median':>7} | {'p99':>7} | {'min':>7} | calls"]
    for label, s in res["latency_us"].items():
        lines.append(f"{label:<24} | {s['median']:7.0f} | {s['p99']:7.0f} | {s['min']:7.0f} | {s['n']}")
    rss = res["rss_kib"]
    big = res["routes"][-1] if res["routes"] else None
    lines += ["", "service memory (VmRSS, MiB)",
              f"idle after start {rss['idle_after_start'] / 1024:.1f}, after latency runs "
              f"{rss['after_latency'] / 1024:.1f}, idle at end {rss['idle_at_end'] / 1024:.1f}, "
              f"peak (VmHWM) {rss['peak'] / 1024:.1f}"]
    if big:
        lines.append(f"after each {big['n']:,}-route cycle: "
                     + ", ".join(f"{k / 1024:.1f}" for k in big["rss_after_kib"]))
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="0,100,1000,10000", help="route counts, comma-separated")
    p.add_argument("--reps", type=int, default=5, help="repetitions per route count (default 5)")
    p.add_argument("--calls", type=int, default=2000, help="timed calls per latency kind (default 2000)")
    p.add_argument("--warmup", type=int, default=200, help="untimed calls first (default 200)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    p.add_argument("--profile", type=Path, metavar="FILE", help="run the service under cProfile, stats to FILE")
    p.add_argument("--against", metavar="REF", help="also run commit REF's service, alternating with ours")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    if os.geteuid() != 0:
        p.error("run as root (namespaces, a system-type bus, the service)")

    common.raise_on_signals()
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = datetime.now(timezone.utc).astimezone()
    env = common.Environment(profile=args.profile)
    old = against = None
    try:
        if args.against:
            tree = env.dir / "against"
            against = f"{args.against} ({common.export_tree(args.against, tree)})"
            old = common.Environment(tree=tree)
        res = asyncio.run(bench(env, args, old))
    except common.Interrupted as e:
        print(f"bench: {e}, cleaning up", file=sys.stderr)
        logging.getLogger("asyncio").disabled = True  # futures of a connection cut short
        return 128 + e.signum
    except Exception:
        if env.service is not None:
            print(env.service.diagnostics()[-4000:], file=sys.stderr)
        raise
    finally:
        if old is not None:
            old.close()
        env.close()

    target = next((r for r in res["routes"] if r["n"] == TARGET_N), None)
    res = {
        "date": started.isoformat(timespec="seconds"),
        "host": f"{platform.node()} {platform.release()}",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "reps": args.reps,
        "target": {"n": TARGET_N, "max_ratio": TARGET_RATIO,
                   "ratio": target["ratio"] if target else None,
                   "pass": target["ratio"] <= TARGET_RATIO if target else None},
        "against": against,
        "target_against": {"n": TARGET_N, "max_ratio": AGAINST_RATIO,
                           "ratio": target.get("vs_against") if target else None,
                           "pass": target["vs_against"] <= AGAINST_RATIO if target and "vs_against" in target
                           else None},
        **res,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    print(report(res))
    print(f"\nJSON: {args.json}")
    missed = res["target"]["pass"] is False or res["target_against"]["pass"] is False
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
