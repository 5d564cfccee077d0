"""Sync fan-out benchmark: 10,000 Position entities, 1,000 random updates per flush.

Compares, in the same run:

- **sync**: ``SyncServer``: world inserts, conflation, one SYNC frame per client per flush,
  each item encoded once and the bytes shared by every client;
- **baseline**: raw ``websockets`` ``broadcast()`` of the same 1,000 items packed once with
  msgpack per flush (no world, no subscriptions, no per-client frames).

C clients subscribe to every Position from another process (``bench/_client.py``). Reported:
delivered updates/s, bytes on the wire per update inside a batch, server CPU per flush, and
item encodings per flush (which must not grow with C). Usage::

    python bench/sync_fanout.py            # C = 1, 10, 100; writes bench/results/ and docs
    python bench/sync_fanout.py --clients 10 --flushes 50 --no-docs
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import publish  # noqa: E402
from net_fanout import finish, pin, spawn_clients  # noqa: E402

from pl3xus_rx import NetworkSettings, SyncServer, SyncSettings  # noqa: E402

ENTITIES = 10_000
PER_FLUSH = 1_000
BACKLOG_FRAMES = 20


class Position(BaseModel):
    x: float
    y: float


@dataclass
class Result:
    mode: str
    clients: int
    flushes: int
    seconds: float
    server_cpu: float
    wire_bytes: int
    encodings_per_flush: float

    @property
    def updates(self) -> int:
        return self.flushes * PER_FLUSH * self.clients

    @property
    def rate(self) -> float:
        return self.updates / self.seconds

    @property
    def bytes_per_update(self) -> float:
        return self.wire_bytes / self.updates

    @property
    def cpu_ms_per_flush(self) -> float:
        return self.server_cpu / self.flushes * 1e3


def batches(rng: random.Random, flushes: int) -> list[list[tuple[int, float, float]]]:
    out = []
    for _ in range(flushes):
        ids = rng.sample(range(ENTITIES), PER_FLUSH)
        out.append(
            [(i, round(rng.uniform(-100, 100), 3), round(rng.uniform(-100, 100), 3)) for i in ids]
        )
    return out


async def bench_sync(clients: int, plan: list[list[tuple[int, float, float]]]) -> Result:
    server = SyncServer(
        NetworkSettings(
            ping_interval=None,
            max_connections=None,
            channel_capacity=1000,
            rate_limit_per_second=None,
        ),
        SyncSettings(max_update_rate_hz=100_000),
    )
    server.sync_component(Position)
    world = server.world
    ents = [world.spawn(Position(x=0, y=0)) for _ in range(ENTITIES)]
    async with server.serve("127.0.0.1", 0) as (_, port):
        hello = msgpack.packb([3, 1, "Position", None, {}])
        proc = await spawn_clients(port, clients, len(plan), skip=2, hello=hello)
        while server.engine.statistics().subscriptions < clients:
            await asyncio.sleep(0.01)
        while server.engine.statistics().frames < clients:  # snapshots out
            await asyncio.sleep(0.01)
        conns = list(server.net._connections.values())  # internal, for pacing only
        # The values are built before timing, as the baseline's tuples are.
        typed = [[(ents[i], Position(x=x, y=y)) for i, x, y in batch] for batch in plan]
        enc0 = server.engine.statistics().item_encodings
        cpu0 = time.process_time()
        for batch in typed:
            for entity, value in batch:
                world.insert(entity, value)
            await asyncio.sleep(0)  # the flush runs here: the loop is free
            while any(len(c.queue) > BACKLOG_FRAMES for c in conns):
                await asyncio.sleep(0.001)
        seconds, wire = await finish(proc)
        cpu = time.process_time() - cpu0
        encodings = (server.engine.statistics().item_encodings - enc0) / len(plan)
    return Result("sync", clients, len(plan), seconds, cpu, wire, encodings)


async def bench_baseline(clients: int, plan: list[list[tuple[int, float, float]]]) -> Result:
    from websockets.asyncio.server import broadcast, serve

    conns: set = set()

    async def handler(ws) -> None:  # type: ignore[no-untyped-def]
        conns.add(ws)
        await ws.wait_closed()
        conns.discard(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        proc = await spawn_clients(port, clients, len(plan), skip=0)
        while len(conns) < clients:
            await asyncio.sleep(0.01)
        pack = msgpack.Packer().pack
        cpu0 = time.process_time()
        for batch in plan:
            frame = pack([[i, [x, y]] for i, x, y in batch])
            broadcast(conns, frame)
            await asyncio.sleep(0)
            while any(
                ws.transport.get_write_buffer_size() > BACKLOG_FRAMES * len(frame) for ws in conns
            ):
                await asyncio.sleep(0.001)
        seconds, wire = await finish(proc)
        cpu = time.process_time() - cpu0
    return Result("baseline", clients, len(plan), seconds, cpu, wire, float(PER_FLUSH))


def median(runs: list[Result]) -> Result:
    runs = sorted(runs, key=lambda r: r.rate)
    mid = runs[len(runs) // 2]
    mid.server_cpu = statistics.median(r.server_cpu for r in runs)
    return mid


def table(results: list[Result], clients: list[int]) -> str:
    lines = [
        f"{ENTITIES:,} entities, {PER_FLUSH:,} random `Position(x, y)` updates per flush. "
        "Medians of the runs.",
        "",
        "| C clients | path | delivered updates/s | bytes/update | server CPU ms/flush "
        "| item encodings/flush | sync / baseline |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for c in clients:
        base = next(r for r in results if r.mode == "baseline" and r.clients == c)
        sync = next(r for r in results if r.mode == "sync" and r.clients == c)
        for r in (base, sync):
            ratio = f"**{sync.rate / base.rate:.0%}**" if r is sync else ""
            lines.append(
                f"| {c} | {r.mode} | {r.rate:,.0f} | {r.bytes_per_update:.1f} "
                f"| {r.cpu_ms_per_flush:.2f} | {r.encodings_per_flush:,.0f} | {ratio} |"
            )
    return "\n".join(lines)


async def main(clients: list[int], flushes: int, repeat: int) -> list[Result]:
    pin(0)
    rng = random.Random(7)
    results = []
    for c in clients:
        n = max(20, flushes // max(1, c // 10))  # fewer flushes for many clients
        plan = batches(rng, n)
        for mode, fn in (("baseline", bench_baseline), ("sync", bench_sync)):
            r = median([await fn(c, plan) for _ in range(repeat)])
            print(
                f"C={c:<4} {mode:<8} {r.rate:>12,.0f} upd/s {r.bytes_per_update:5.1f} B/upd "
                f"{r.cpu_ms_per_flush:7.2f} ms/flush {r.encodings_per_flush:7.0f} enc/flush",
                flush=True,
            )
            results.append(r)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Sync fan-out benchmark (see docstring).")
    parser.add_argument("--clients", default="1,10,100")
    parser.add_argument("--flushes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    cs = [int(x) for x in args.clients.split(",")]
    res = asyncio.run(main(cs, args.flushes, args.repeat))
    text = table(res, cs)
    publish("sync_fanout", "python bench/sync_fanout.py", text, docs=not args.no_docs)
