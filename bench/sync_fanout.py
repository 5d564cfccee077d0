"""Sync fan-out benchmark: 10,000 Position entities, 1,000 random updates per flush.

Every tick's values start as the same raw ``(entity, x, y)`` tuples. Compares, in the same
run, interleaved (every path once per round, in a rotating order):

- **raw** (the baseline): ``websockets`` ``broadcast()`` of the tick's 1,000
  ``[entity, [x, y]]`` items packed once with msgpack (no world, no subscriptions, no
  per-client frames);
- **model path**: ``SyncServer``: ``world.insert(entity, Position(x=x, y=y))`` per update, the
  model built in the tick, then the flush: conflation, one SYNC frame per client, each item
  encoded once and the bytes shared by every client;
- **fast path**: ``world.update_many(Position, rows)`` on the tick's tuples (validated in one
  pydantic-core call, no model instance), then the same flush;
- **trusted**: ``world.update_many(Position, rows, trusted=True)`` (no validation);
- **models pre-built**: ``world.insert`` of models built before timing (the benchmark's
  earlier sync row: the insert and the flush without building the values).

C clients subscribe to every Position from another process (``bench/_client.py``). Reported:
delivered updates/s, each path's as a % of raw's in the same round (median over the rounds,
and its range), the same for raw's server CPU per flush over the path's, how busy the server
was (CPU over wall time: below 100 % it waited for its clients or for a core), bytes on the
wire per update inside a batch, server CPU per flush, and item encodings per flush (which
must not grow with C). Usage::

    python bench/sync_fanout.py            # C = 1, 10, 100; writes bench/results/ and docs
    python bench/sync_fanout.py --clients 10 --flushes 50 --repeat 1 --no-docs
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


PATHS = {  # name in the table: what the tick does with its tuples
    "raw": "raw `websockets` `broadcast()`",
    "model": "model path: `insert(e, Position(x=, y=))`",
    "fast": "fast path: `update_many(Position, rows)`",
    "trusted": "`update_many(..., trusted=True)`",
    "prebuilt": "models pre-built: `insert(e, model)`",
}

Plan = list[list[tuple[int, float, float]]]


def batches(rng: random.Random, flushes: int) -> Plan:
    """Per flush, 1,000 ``(entity, x, y)``: entity ids as a fresh World gives them (1..N)."""
    out = []
    for _ in range(flushes):
        ids = rng.sample(range(1, ENTITIES + 1), PER_FLUSH)
        out.append(
            [(i, round(rng.uniform(-100, 100), 3), round(rng.uniform(-100, 100), 3)) for i in ids]
        )
    return out


async def bench_sync(clients: int, plan: Plan, path: str) -> Result:
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
    assert ents == list(range(1, ENTITIES + 1)), "the plan's entity ids are the World's"
    insert, update_many = world.insert, world.update_many
    async with server.serve("127.0.0.1", 0) as (_, port):
        hello = msgpack.packb([3, 1, "Position", None, {}])
        proc = await spawn_clients(port, clients, len(plan), skip=2, hello=hello)
        while server.engine.statistics().subscriptions < clients:
            await asyncio.sleep(0.01)
        while server.engine.statistics().frames < clients:  # snapshots out
            await asyncio.sleep(0.01)
        conns = list(server.net._connections.values())  # internal, for pacing only
        # "prebuilt": the values are built before timing, as the baseline's tuples are.
        typed = (
            [[(e, Position(x=x, y=y)) for e, x, y in b] for b in plan] if path == "prebuilt" else []
        )
        enc0 = server.engine.statistics().item_encodings
        cpu0 = time.process_time()
        for k, batch in enumerate(plan):
            if path == "model":
                for e, x, y in batch:
                    insert(e, Position(x=x, y=y))  # type: ignore[arg-type]
            elif path == "fast":
                update_many(Position, batch)
            elif path == "trusted":
                update_many(Position, batch, trusted=True)
            else:
                for entity, value in typed[k]:
                    insert(entity, value)  # type: ignore[arg-type]
            await asyncio.sleep(0)  # the flush runs here: the loop is free
            while any(len(c.queue) > BACKLOG_FRAMES for c in conns):
                await asyncio.sleep(0.001)
        seconds, wire = await finish(proc)
        cpu = time.process_time() - cpu0
        encodings = (server.engine.statistics().item_encodings - enc0) / len(plan)
    return Result(path, clients, len(plan), seconds, cpu, wire, encodings)


async def bench_baseline(clients: int, plan: Plan) -> Result:
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
    return Result("raw", clients, len(plan), seconds, cpu, wire, float(PER_FLUSH))


@dataclass
class Summary:
    """One path at one C over the rounds: medians, and the per-round ratio to raw."""

    median: Result  # the run of median rate, with the median server CPU
    ratios: list[float]  # this path's rate / raw's rate, per round (same round)
    cpu_ratios: list[float]  # raw's server CPU / this path's, per round


def summarize(runs: list[list[Result]], path: str) -> Summary:
    """``runs``: per round, every path's result (raw among them)."""
    mine = [next(r for r in rnd if r.mode == path) for rnd in runs]
    ratios, cpu_ratios = [], []
    for rnd in runs:
        mine_r = next(r for r in rnd if r.mode == path)
        raw_r = next(r for r in rnd if r.mode == "raw")
        ratios.append(mine_r.rate / raw_r.rate)
        cpu_ratios.append(raw_r.cpu_ms_per_flush / mine_r.cpu_ms_per_flush)
    ordered = sorted(mine, key=lambda r: r.rate)
    mid = ordered[len(ordered) // 2]
    med = Result(
        mid.mode,
        mid.clients,
        mid.flushes,
        mid.seconds,
        statistics.median(r.server_cpu for r in mine),
        mid.wire_bytes,
        mid.encodings_per_flush,
    )
    return Summary(med, ratios, cpu_ratios)


def table(summaries: dict[tuple[int, str], Summary], clients: list[int], rounds: int) -> str:
    lines = [
        f"{ENTITIES:,} entities, {PER_FLUSH:,} random `Position(x, y)` updates per flush from "
        f"raw `(entity, x, y)` tuples. Every path once per round, interleaved; medians of "
        f"{rounds} rounds. *% of raw*: the median over the rounds of the path's delivered "
        "updates/s over raw's in the same round (lowest to highest round in brackets). "
        "*CPU: raw / path*: the same for raw's server CPU per flush over the path's. "
        "*busy*: the server's CPU time over the delivery's wall time (below 100 %: the "
        "server waited, for its clients or for a core).",
        "",
        "| C clients | path | delivered updates/s | % of raw | CPU: raw / path | busy "
        "| bytes/update | server CPU ms/flush | item encodings/flush |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def spread(values: list[float]) -> str:
        return f"**{statistics.median(values):.0%}** ({min(values):.0%} to {max(values):.0%})"

    for c in clients:
        for path, label in PATHS.items():
            s = summaries.get((c, path))
            if s is None:
                continue
            r = s.median
            pct = cpu = ""
            if path != "raw":
                pct, cpu = spread(s.ratios), spread(s.cpu_ratios)
            lines.append(
                f"| {c} | {label} | {r.rate:,.0f} | {pct} | {cpu} "
                f"| {r.server_cpu / r.seconds:.0%} | {r.bytes_per_update:.1f} "
                f"| {r.cpu_ms_per_flush:.2f} | {r.encodings_per_flush:,.0f} |"
            )
    return "\n".join(lines)


async def main(
    clients: list[int], flushes: int, repeat: int, paths: list[str]
) -> dict[tuple[int, str], Summary]:
    pin(0)
    rng = random.Random(7)
    out: dict[tuple[int, str], Summary] = {}
    for c in clients:
        n = max(100, flushes // max(1, c // 10))  # fewer flushes for many clients
        plan = batches(rng, n)
        rounds: list[list[Result]] = []
        for k in range(repeat):
            order = paths[k % len(paths) :] + paths[: k % len(paths)]
            got = []
            for path in order:
                r = await (bench_baseline(c, plan) if path == "raw" else bench_sync(c, plan, path))
                got.append(r)
            base = next(r for r in got if r.mode == "raw")
            print(
                f"C={c:<4} round {k + 1}: "
                + "  ".join(
                    f"{r.mode} {r.rate / 1e6:.2f} M/s {r.cpu_ms_per_flush:.2f} ms"
                    + ("" if r is base else f" ({r.rate / base.rate:.0%})")
                    for r in sorted(got, key=lambda r: paths.index(r.mode))
                ),
                flush=True,
            )
            rounds.append(got)
        for path in paths:
            out[(c, path)] = summarize(rounds, path)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Sync fan-out benchmark (see docstring).")
    parser.add_argument("--clients", default="1,10,100")
    parser.add_argument("--flushes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--paths", default=",".join(PATHS), help="raw is always run")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    cs = [int(x) for x in args.clients.split(",")]
    chosen = ["raw", *(p for p in args.paths.split(",") if p != "raw")]
    res = asyncio.run(main(cs, args.flushes, args.repeat, chosen))
    text = table(res, cs, args.repeat)
    command = "python bench/sync_fanout.py" + (
        f" --repeat {args.repeat}" if args.repeat != 5 else ""
    )
    publish("sync_fanout", command, text, docs=not args.no_docs)
