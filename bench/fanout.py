#!/usr/bin/env python3
"""NetworkChange fan-out: the events of one Establish, to N subscriber processes.

    .venv/bin/python bench/fanout.py [--routes 1000,10000] [--subscribers 1,10]
                                     [--repeat 1] [--subscriber handler|proxy]
                                     [--floor unicast,broadcast | --no-floor]
                                     [--timeline] [--profile DIR] [--json]

As root.  Starts a private system-type dbus-daemon, a network namespace and
netcfg in it (tests/support), then per case: a device, N subscriber
processes (bench/fanout_peers.py, mask 21: DEVICE_ADDED|IPADDR_ADDED|
ROUTE_ADDED), one prober process calling Get(version) every 5 ms, R routes;
Establish is called and timed until every subscriber has its R + 2 events
(DEVICE_ADDED, IPADDR_ADDED, R x ROUTE_ADDED).  One line per case (fields:
bench/FANOUT.md):

  fanout routes=R subscribers=N kind=handler total_s=.. establish_reply_s=..
         deliveries=.. deliveries_per_s=.. after_reply_s=.. fanout_s=..
         fanout_deliveries_per_s=.. lost=.. duplicates=.. call_p50_ms=..
         call_p99_ms=.. call_max_ms=.. calls=.. fanout_call_p50_ms=..
         fanout_call_p99_ms=.. fanout_call_max_ms=.. fanout_calls=..
         cpu_{service,daemon,subscribers,others,machine,steal}_s=..
         fanout_cpu_{...}_s=.. fanout_daemon_sleeps=.. fanout_cpu_foreign_s=..
         daemon_sleeps=.. load1=.. bus=.. floor_unicast_deliveries_per_s=..
         floor_broadcast_deliveries_per_s=.. floor_lost=.. ratio=..
         ratio_end_to_end=..

total_s runs from the Establish call to the last event at the slowest
subscriber (it includes installing the routes: establish_reply_s);
fanout_s from the first event at any subscriber to that last one; lost
counts events that never arrived (60 s without progress); cpu_*_s is the
CPU time used meanwhile, fanout_cpu_*_s the same during fanout_s alone.
The floor (--floor, default both) is measured right before or after each
case (alternately per repetition), on the same bus, without netcfg:
fanout_floor.py's emitter sends the same R + 2 ROUTE_ADDED-shaped signals
to N new subscriber processes (message handlers, even with --subscriber
proxy), unicast (netcfg's bytes, event after event) then broadcast (notes
1.4).  ratio = fanout_deliveries_per_s / the unicast floor's rate, so that
the machine's speed, which moves by ~50%, largely cancels out;
ratio_end_to_end = deliveries_per_s / the same.  Exit code 1 if any event
was lost, the floor's included.
Environment: FANOUT_KEEP=1 keeps the temporary directory (service log);
FANOUT_SPY_RATE, FANOUT_SPY_FORMAT (raw|speedscope), FANOUT_SPY_IDLE=1
tune --profile.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from dbus_fast import Message, MessageType, Variant  # noqa: E402
from dbus_fast.aio import MessageBus  # noqa: E402

import fanout_floor  # noqa: E402  (bench/ is on sys.path: this script's directory)
from support.brokerbus import BrokerBus  # noqa: E402
from support.busdaemon import BusDaemon  # noqa: E402
from support.netns import Netns  # noqa: E402
from support.service import ServiceProcess  # noqa: E402
from support.users import ensure_users  # noqa: E402

NAME = IFACE = "net.openvpn.v3.netcfg"
MANAGER = "/net/openvpn/v3/netcfg"
PROPS = "org.freedesktop.DBus.Properties"
PEERS = [sys.executable, str(HERE / "fanout_peers.py")]
STALL = 60.0  # seconds without a new event before the rest counts as lost


async def call(bus, path, member, signature="", body=(), interface=IFACE) -> Message:
    reply = await bus.call(Message(destination=NAME, path=path, interface=interface, member=member,
                                   signature=signature, body=list(body)))
    if reply.message_type is MessageType.ERROR:
        raise RuntimeError(f"{member}: {reply.error_name}: {reply.body}")
    return reply


class Peer:
    """One peer process; JSON lines on its stdout, EOF on its stdin ends it."""

    def __init__(self, proc) -> None:
        self.proc = proc
        self.name = ""  # its unique name on the bus

    @classmethod
    async def start(cls, *args: str) -> "Peer":
        proc = await asyncio.create_subprocess_exec(*PEERS, *args, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE)
        peer = cls(proc)
        ready = await peer.line(30)
        if "ready" not in ready:
            raise RuntimeError(f"peer {args[0]}: {ready}")
        peer.name = ready["ready"]
        return peer

    async def line(self, timeout: float) -> dict:
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise RuntimeError("peer exited")
        return json.loads(raw)

    async def finish(self) -> dict:
        self.proc.stdin.close()
        out = {}
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), 30)
            if not raw:
                break
            out.update(json.loads(raw))
        await self.proc.wait()
        return out


def networks(count: int) -> list[list]:
    base = int(ipaddress.IPv4Address("100.64.0.0"))
    return [[str(ipaddress.IPv4Address(base + i)), 32, -1, False, False] for i in range(count)]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_seconds() -> dict[str, float]:
    """CPU seconds the whole machine spent busy (all cores, every process) and stolen by the hypervisor."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal
    return {"machine": (v[0] + v[1] + v[2] + v[5] + v[6]) / hz, "steal": v[7] / hz}


def sleeps(pid: int) -> int:
    """Voluntary context switches so far: how often the process waited for work."""
    with open(f"/proc/{pid}/status") as f:
        for text in f:
            if text.startswith("voluntary_ctxt_switches"):
                return int(text.split()[1])
    return 0


class CpuSampler:
    """CPU seconds of groups of processes, sampled every `period` s in a thread.

    `between(t1, t2)` gives each group's CPU over [t1, t2] (monotonic
    times, as the subscribers report them), interpolated between samples.
    CLK_TCK is 100 Hz: a window shorter than ~0.2 s is imprecise.
    """

    def __init__(self, pids: dict[str, list[int]], period: float = 0.01) -> None:
        import threading

        self.pids, self.period = pids, period
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            self.samples.append((now, {**{k: sum(cpu_seconds(p) for p in v) for k, v in self.pids.items()},
                                       **machine_seconds(), "daemon_sleeps": sleeps(self.pids["daemon"][0])}))
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, t: float) -> dict[str, float]:
        import bisect

        times = [s[0] for s in self.samples]
        i = bisect.bisect_left(times, t)
        if i <= 0:
            return self.samples[0][1]
        if i >= len(times):
            return self.samples[-1][1]
        (ta, a), (tb, b) = self.samples[i - 1], self.samples[i]
        f = (t - ta) / (tb - ta) if tb > ta else 0.0
        return {k: a[k] + f * (b[k] - a[k]) for k in a}

    def between(self, t1: float, t2: float) -> dict[str, float]:
        a, b = self.at(t1), self.at(t2)
        return {k: b[k] - a[k] for k in a}


async def one_case(address: str, routes: int, subscribers: int, index: int, pids: dict, kind: str,
                   timeline: bool = False) -> dict:
    expect = routes + 2
    bus = await MessageBus(bus_address=address, negotiate_unix_fd=True).connect()
    dev = (await call(bus, MANAGER, "CreateVirtualInterface", "s", [f"fanout{index}"])).body[0]
    subs = await asyncio.gather(*(Peer.start("subscriber", "--address", address, "--expect", str(expect),
                                             "--kind", kind, "--path", dev)
                                  for _ in range(subscribers)))
    prober = await Peer.start("prober", "--address", address)
    try:
        await call(bus, dev, "Set", "ssv", [IFACE, "layer", Variant("u", 3)], PROPS)
        await call(bus, dev, "AddIPAddress", "susb", ["10.8.0.2", 16, "10.8.0.1", False])
        nets = networks(routes)
        for i in range(0, routes, 5000):
            await call(bus, dev, "AddNetworks", "a(suibb)", [nets[i:i + 5000]])
        await asyncio.sleep(0.5)  # prober samples before the burst
        pids = {**pids, "subscribers": [s.proc.pid for s in subs],
                "others": [os.getpid(), prober.proc.pid]}
        groups = {k: (v if isinstance(v, list) else [v]) for k, v in pids.items()}
        sampler = CpuSampler(groups)
        cpu0 = {**{k: sum(cpu_seconds(p) for p in v) for k, v in groups.items()}, **machine_seconds()}
        daemon_sleeps0 = sleeps(pids["daemon"])
        load = os.getloadavg()[0]
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        reply = await call(bus, dev, "Establish")
        t_reply = time.monotonic()
        done = await asyncio.gather(*(wait_done(s) for s in subs))
        t_end = max((d.get("last") or t0) for d in done)
        t_first = min((d.get("first") or t_end) for d in done)
        cpu = {**{k: sum(cpu_seconds(p) for p in v) for k, v in groups.items()}, **machine_seconds()}
        cpu = {k: v - cpu0[k] for k, v in cpu.items()}
        daemon_sleeps = sleeps(pids["daemon"]) - daemon_sleeps0
        await asyncio.sleep(0.05)
        sampler.stop()
        cpu_fanout = sampler.between(t_first, t_end)
        if timeline:
            print_timeline(sampler, t0, t_reply, t_first, t_end)
        await asyncio.sleep(0.3)  # duplicates, if any, arrive meanwhile
        await call(bus, dev, "Destroy")
        for fd in reply.unix_fds:
            os.close(fd)
    finally:
        bus.disconnect()
    finals = [await s.finish() for s in subs]
    samples = (await prober.finish()).get("samples", [])
    if timeline:
        slow = [(round((start - t0) * 1000), round(lat * 1000, 1)) for start, lat in samples
                if t0 <= start <= t_end and lat > 0.015]
        print(f"calls over 15 ms (start ms after the Establish call, latency ms): {slow}; "
              f"reply at {(t_reply - t0) * 1000:.0f}, first event at {(t_first - t0) * 1000:.0f}", file=sys.stderr)
    during = [lat for start, lat in samples if t0 <= start <= t_end] or [0.0]
    # calls started during the burst, or before it and answered during it
    in_fanout = [lat for start, lat in samples if start <= t_end and start + lat >= t_first] or [0.0]
    delivered = sum(min(f.get("final", 0), expect) for f in finals)
    total = t_end - t0
    return {
        "routes": routes, "subscribers": subscribers, "kind": kind, "total_s": round(total, 3),
        "establish_reply_s": round(t_reply - t0, 3), "deliveries": delivered,
        "deliveries_per_s": round(delivered / total) if total > 0 else 0,
        "after_reply_s": round(t_end - t_reply, 3),  # the client has its tun: how long until every event is in
        "fanout_s": round(t_end - t_first, 3),
        "fanout_deliveries_per_s": round(delivered / (t_end - t_first)) if t_end > t_first else 0,
        "lost": expect * subscribers - delivered,
        "duplicates": sum(max(f.get("final", 0) - expect, 0) for f in finals),
        "call_p50_ms": round(statistics.median(during) * 1000, 2),
        "call_p99_ms": round(percentile(during, 0.99) * 1000, 2),
        "call_max_ms": round(max(during) * 1000, 2), "calls": len(during),
        "fanout_call_p50_ms": round(statistics.median(in_fanout) * 1000, 2),
        "fanout_call_p99_ms": round(percentile(in_fanout, 0.99) * 1000, 2),
        "fanout_call_max_ms": round(max(in_fanout) * 1000, 2), "fanout_calls": len(in_fanout),
        **{f"cpu_{k}_s": round(v, 2) for k, v in cpu.items()},
        **{f"fanout_cpu_{k}_s": round(v, 2) for k, v in cpu_fanout.items() if k != "daemon_sleeps"},
        "fanout_daemon_sleeps": round(cpu_fanout["daemon_sleeps"]),
        # other people's processes on the machine meanwhile (it is shared)
        "fanout_cpu_foreign_s": round(cpu_fanout["machine"] - sum(cpu_fanout[k] for k in groups), 2),
        "daemon_sleeps": daemon_sleeps, "load1": round(load, 2),
    }


async def floor(address: str, mode: str, events: int, subscribers: int) -> dict:
    """The bus alone: `events` NetworkChange signals per subscriber, no netcfg.

    fanout_floor.py's emitter (a bare dbus-fast connection) sends them,
    shaped like netcfg's ROUTE_ADDED, to subscriber processes of the same
    program as netcfg's (handlers: a proxy would drop signals whose sender
    is not netcfg; the emitter's request for netcfg's name is only queued).
    mode "unicast-raw": one message per (event, subscriber), netcfg's bytes
    event after event: what netcfg must send, without netcfg's own work;
    "broadcast": one message per event, the bus copies it to the
    subscribers' match rules (what notes 1.4 measured).  The rate is over
    first event at any subscriber -> last one, as fanout_deliveries_per_s.
    """
    subs = await asyncio.gather(*(Peer.start("subscriber", "--address", address, "--expect", str(events),
                                             *(["--match"] if mode == "broadcast" else []))
                                  for _ in range(subscribers)))
    emitter, _ = await fanout_floor.start("emitter", "--address", address, "--signals", str(events),
                                          "--mode", mode)
    try:
        await asyncio.sleep(0.05)
        emitter.stdin.write((json.dumps([s.name for s in subs]) + "\n").encode())  # "go"
        await emitter.stdin.drain()
        done = await asyncio.gather(*(wait_done(s) for s in subs))
    finally:
        emitter.kill()
        await emitter.wait()
    finals = [await s.finish() for s in subs]
    t_end = max((d.get("last") or 0.0) for d in done)
    t_first = min((d.get("first") or t_end) for d in done)
    delivered = sum(min(f.get("final", 0), events) for f in finals)
    return {"deliveries_per_s": round(delivered / (t_end - t_first)) if t_end > t_first else 0,
            "lost": events * subscribers - delivered}


async def floors(address: str, modes: list[str], routes: int, subscribers: int) -> dict:
    """The floors of one case (--floor), one after the other."""
    out, lost = {}, 0
    for mode in modes:
        r = await floor(address, "unicast-raw" if mode == "unicast" else mode, routes + 2, subscribers)
        out[f"floor_{mode}_deliveries_per_s"] = r["deliveries_per_s"]
        lost += r["lost"]
    if modes:
        out["floor_lost"] = lost
    return out


def ratios(result: dict) -> dict:
    """netcfg's rates as fractions of the unicast floor's, when there is one."""
    floor_rate = result.get("floor_unicast_deliveries_per_s")
    if not floor_rate:
        return {}
    return {"ratio": round(result["fanout_deliveries_per_s"] / floor_rate, 2),
            "ratio_end_to_end": round(result["deliveries_per_s"] / floor_rate, 2)}


def print_timeline(sampler: "CpuSampler", t0: float, t_reply: float, t_first: float, t_end: float,
                   step: float = 0.05) -> None:
    """CPU of each group per `step` seconds from the Establish call to the last event (--timeline)."""
    keys = ["service", "daemon", "subscribers", "others", "machine"]
    print(f"{'ms':>6} " + " ".join(f"{k[:8]:>8}" for k in keys) + "  (% of one core; machine: both cores, all processes)",
          file=sys.stderr)
    t = t0
    while t < t_end:
        cpu = sampler.between(t, t + step)
        marks = "".join(m for m, at in (("R", t_reply), ("F", t_first), ("E", t_end)) if t <= at < t + step)
        print(f"{(t - t0) * 1000:6.0f} " + " ".join(f"{cpu[k] / step * 100:8.0f}" for k in keys) + f"  {marks}",
              file=sys.stderr)
        t += step


async def wait_done(sub: Peer) -> dict:
    """The subscriber's "done" line, or {} after STALL seconds of nothing."""
    try:
        return await sub.line(STALL)
    except asyncio.TimeoutError:
        return {}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def profiler(directory: str | None, pid: int, name: str):
    """py-spy on the service for one case (--profile DIR), as collapsed stacks."""
    if not directory:
        return None
    import subprocess

    os.makedirs(directory, exist_ok=True)
    out = os.path.join(directory, f"service-{name}.txt")
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([spy, "record", "--nonblocking", *(["--idle"] if os.environ.get("FANOUT_SPY_IDLE") else []), "-r", os.environ.get("FANOUT_SPY_RATE", "250"), "-p", str(pid), "-f", os.environ.get("FANOUT_SPY_FORMAT", "raw"),
                             "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def line(result: dict) -> str:
    return "fanout " + " ".join(f"{k}={v}" for k, v in result.items())


async def run(args) -> int:
    ensure_users()
    bus = (BrokerBus() if args.bus == "dbus-broker" else BusDaemon()).start()
    ns = Netns.create(prefix="ncbench")
    directory = tempfile.mkdtemp(prefix="netcfg-fanout-")
    svc = ServiceProcess(bus.address, ns.name, directory, log_level=args.log_level)
    results = []
    try:
        await svc.start()
        index = 0
        for rep in range(args.repeat):
            for routes in args.routes:
                for subscribers in args.subscribers:
                    index += 1
                    # The floor right before or after netcfg's run, alternately
                    # from one repetition to the next: a burst of other load
                    # hits both, and neither always runs on the heels of the other.
                    floor_first = rep % 2 == 1
                    if floor_first:
                        base = await floors(bus.address, args.floor, routes, subscribers)
                    spy = profiler(args.profile, svc.pid, f"r{routes}-s{subscribers}-{index}")
                    result = await one_case(bus.address, routes, subscribers, index,
                                            {"service": svc.pid, "daemon": bus.daemon_pid}, args.subscriber,
                                            args.timeline)
                    if spy:
                        spy.send_signal(2)  # SIGINT: py-spy writes its file
                        spy.wait()
                    if not floor_first:
                        base = await floors(bus.address, args.floor, routes, subscribers)
                    result["bus"] = args.bus
                    result.update(base)
                    result.update(ratios(result))
                    results.append(result)
                    print(json.dumps(result) if args.json else line(result), flush=True)
        await svc.assert_healthy()
    finally:
        if svc.alive():
            await svc.stop()
        ns.delete()
        bus.cleanup()
        if os.environ.get("FANOUT_KEEP"):  # the service's log is in it
            print(f"kept {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return 1 if any(r["lost"] or r.get("floor_lost") for r in results) else 0


def floor_modes(text: str) -> list[str]:
    modes = [m for m in text.split(",") if m]
    if set(modes) - {"unicast", "broadcast"}:
        raise argparse.ArgumentTypeError("unicast, broadcast or both")
    return modes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    p.add_argument("--routes", type=ints, default=[1000, 10000])
    p.add_argument("--subscribers", type=ints, default=[1, 10])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--bus", choices=("dbus-daemon", "dbus-broker"), default="dbus-daemon",
                   help="the private bus: dbus-daemon (Debian's system bus, default) or dbus-broker "
                   "(Fedora's, Arch's; apt-get install dbus-broker)")
    p.add_argument("--log-level", type=int, default=4, help="the service's --log-level (default 4)")
    p.add_argument("--subscriber", choices=("handler", "proxy"), default="handler",
                   help="how the subscriber processes listen (bench/fanout_peers.py --kind)")
    p.add_argument("--floor", type=floor_modes, default=["unicast", "broadcast"], metavar="MODES",
                   help="the bus's own rates measured next to each case, without netcfg: unicast "
                   "(ratio = netcfg's fan-out rate / this), broadcast (notes 1.4); default both")
    p.add_argument("--no-floor", dest="floor", action="store_const", const=[], help="no floor (faster)")
    p.add_argument("--timeline", action="store_true",
                   help="print each process group's CPU (percent of one core) per 50 ms, on stderr")
    p.add_argument("--json", action="store_true", help="one JSON object per case")
    p.add_argument("--profile", metavar="DIR", help="py-spy the service during each case (collapsed stacks in DIR)")
    args = p.parse_args()
    if os.geteuid() != 0:
        p.error("run as root (network namespace, system-type bus)")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
