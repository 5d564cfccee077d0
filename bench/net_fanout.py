"""Fan-out benchmark: one server broadcasting ~200-byte typed messages to N clients.

Compares, in the same run and on the same machine:

- **typed**: ``pl3xus_rx.Network.broadcast(model)`` (validate-free send path: pydantic dump,
  msgpack encode once, per-connection bounded channel);
- **baseline**: raw ``websockets`` ``broadcast()`` of the same msgpack bytes, encoded once.

The clients run in another process (``bench/_client.py``, pinned to the other core when there
are two) and count frames with a minimal WebSocket frame parser, so the client side costs the
same for both.
Reported: delivered messages/s, MB/s, server CPU per delivered message, and the typed/baseline
ratio. Usage::

    python bench/net_fanout.py                 # N = 1, 10, 100; writes bench/results/ and
                                               # the table in docs/performance.md
    python bench/net_fanout.py --clients 10 --repeat 1 --no-docs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _report import publish  # noqa: E402

from pl3xus_rx import Network, NetworkSettings  # noqa: E402
from pl3xus_rx.protocol import message_frame  # noqa: E402


class Telemetry(BaseModel):
    robot: str
    seq: int
    x: float
    y: float
    z: float
    speed: float
    status: str
    note: str


SAMPLE = Telemetry(
    robot="robot-07",
    seq=123456,
    x=1.25,
    y=-3.5,
    z=0.75,
    speed=0.33,
    status="running",
    note="n" * 90,
)
FRAME = msgpack.packb(message_frame("Telemetry", SAMPLE.model_dump(mode="json")))
BURST = 50
BACKLOG_FRAMES = 2000


# --------------------------------------------------------------------------- server side


@dataclass
class Result:
    mode: str
    clients: int
    delivered: int
    seconds: float
    server_cpu: float
    wire_bytes: int

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds

    @property
    def mbps(self) -> float:
        return self.wire_bytes / self.seconds / 1e6

    @property
    def cpu_us(self) -> float:
        return self.server_cpu / self.delivered * 1e6


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


async def spawn_clients(
    port: int, n: int, per_client: int, skip: int, hello: bytes = b""
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("_client.py")),
        str(port),
        str(n),
        str(per_client),
        str(skip),
        hello.hex(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"ready", line
    return proc


async def finish(proc: asyncio.subprocess.Process) -> tuple[float, int]:
    assert proc.stdout is not None and proc.stdin is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 180)).decode().split()
    proc.stdin.write(b"\n")
    await proc.stdin.drain()
    await asyncio.wait_for(proc.wait(), 30)
    return float(line[1]), int(line[2])


async def bench_typed(n: int, per_client: int) -> Result:
    net = Network(
        NetworkSettings(
            ping_interval=None, channel_capacity=10 * BACKLOG_FRAMES, max_connections=None
        )
    )
    net.register_message(Telemetry)
    _, port = await net.listen("127.0.0.1", 0)
    proc = await spawn_clients(port, n, per_client, skip=1)  # skip the welcome frame
    while len(net.connections) < n:
        await asyncio.sleep(0.01)
    conns = list(net._connections.values())  # internal, for pacing only
    cpu0 = time.process_time()
    sent = 0
    while sent < per_client:
        for _ in range(min(BURST, per_client - sent)):
            net.broadcast(SAMPLE)
        sent += BURST
        await asyncio.sleep(0)
        while any(len(c.queue) > BACKLOG_FRAMES for c in conns):
            await asyncio.sleep(0.001)
    seconds, wire = await finish(proc)
    cpu = time.process_time() - cpu0
    await net.close()
    return Result("typed", n, n * per_client, seconds, cpu, wire)


async def bench_baseline(n: int, per_client: int) -> Result:
    from websockets.asyncio.server import broadcast, serve

    conns: set = set()

    async def handler(ws) -> None:  # type: ignore[no-untyped-def]
        conns.add(ws)
        await ws.wait_closed()
        conns.discard(ws)

    async with serve(
        handler, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=2**20
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        proc = await spawn_clients(port, n, per_client, skip=0)
        while len(conns) < n:
            await asyncio.sleep(0.01)
        limit = BACKLOG_FRAMES * len(FRAME)
        cpu0 = time.process_time()
        sent = 0
        while sent < per_client:
            for _ in range(min(BURST, per_client - sent)):
                broadcast(conns, FRAME)
            sent += BURST
            await asyncio.sleep(0)
            while any(ws.transport.get_write_buffer_size() > limit for ws in conns):
                await asyncio.sleep(0.001)
        seconds, wire = await finish(proc)
        cpu = time.process_time() - cpu0
    return Result("baseline", n, n * per_client, seconds, cpu, wire)


def table(results: list[Result], clients: list[int]) -> str:
    lines = [
        f"Message: `Telemetry`, {len(FRAME)} bytes as a msgpack frame. Medians of the runs.",
        "",
        "| N clients | path | delivered msg/s | MB/s | server CPU µs/msg | typed / baseline |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n in clients:
        base = next(r for r in results if r.mode == "baseline" and r.clients == n)
        typed = next(r for r in results if r.mode == "typed" and r.clients == n)
        for r in (base, typed):
            ratio = f"**{typed.rate / base.rate:.0%}**" if r is typed else ""
            lines.append(
                f"| {n} | {r.mode} | {r.rate:,.0f} | {r.mbps:.1f} | {r.cpu_us:.2f} | {ratio} |"
            )
    return "\n".join(lines)


def median_result(runs: list[Result]) -> Result:
    runs = sorted(runs, key=lambda r: r.rate)
    mid = runs[len(runs) // 2]
    return Result(
        mid.mode,
        mid.clients,
        mid.delivered,
        mid.seconds,
        statistics.median(r.server_cpu for r in runs),
        mid.wire_bytes,
    )


async def main(clients: list[int], total: int, repeat: int) -> list[Result]:
    pin(0)
    results = []
    for n in clients:
        per_client = max(1000, total // n)
        for mode, fn in (("baseline", bench_baseline), ("typed", bench_typed)):
            runs = [await fn(n, per_client) for _ in range(repeat)]
            r = median_result(runs)
            print(
                f"N={n:<4} {mode:<8} {r.rate:>10,.0f} msg/s {r.mbps:7.1f} MB/s "
                f"{r.cpu_us:6.2f} µs/msg",
                flush=True,
            )
            results.append(r)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fan-out benchmark (see module docstring).")
    parser.add_argument("--clients", default="1,10,100")
    parser.add_argument("--total", type=int, default=200_000, help="deliveries per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true", help="don't update performance.md")
    args = parser.parse_args()
    ns = [int(x) for x in args.clients.split(",")]
    res = asyncio.run(main(ns, args.total, args.repeat))
    text = table(res, ns)
    publish("net_fanout", "python bench/net_fanout.py", text, docs=not args.no_docs)
