"""Warm restarts (issue 28): what saving and loading a World's state file costs.

A ``SyncServer`` (pinned to core 0) holds 100,000 entities of 3 components each
(``Position(x, y)``, ``Status(state, speed)``, ``Name(text)``) and serves one WebSocket
client (``bench/_client.py``, core 1) subscribed to every ``Position``. A producer changes
1,000 random positions 60 times a second, so the server flushes at its cap, 60 Hz (one flush
interval: 16.7 ms). In each run, two phases of the same length, in alternating order:

- **quiet**: no saves;
- **saving**: ``await server.save_state()`` back to back, the whole phase long.

Measured, in the same run:

- a save's wall time (snapshot on the loop, then encoding and writing in a thread:
  temporary file, fsync, rename, folder fsync), and the part spent on the loop;
- the intervals between flushes (from each flush's start, as the server's instruments see
  it) in both phases: how much later than usual a flush comes while saves run;
- a load of the file into a new server (reading, checking, validating, restoring);
- file bytes per component value against the wire bytes of the same value (its msgpack
  SYNC item ``[entity, [fields]]``, as a flush sends it).

Goals: a save at most 1 s; no flush delayed by more than one flush interval (the longest
interval while saving at most two); a load at most 2 s; file bytes per value at most 2x the
wire's. Figures are medians over the runs (the longest interval: the worst of all runs).

    python bench/persist.py                  # 3 runs of 2 x 5 s; about a minute
    python bench/persist.py --quick --no-docs    # a quick pass (tests/test_bench.py)

The table goes to bench/results/persist.md and docs/performance.md (not with ``--no-docs``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
from _report import publish
from pydantic import BaseModel

from pl3xus_rx import NetworkSettings, StateSettings, SyncServer, SyncSettings
from pl3xus_rx.instruments import Instrument
from pl3xus_rx.protocol import msgpack_encode
from pl3xus_rx.world import entry_fields

BENCH = Path(__file__).resolve().parent
FLUSH_HZ = 60.0
CHANGES_PER_TICK = 1_000


class Position(BaseModel):
    x: float
    y: float


class Status(BaseModel):
    state: str = "idle"
    speed: float = 0.5


class Name(BaseModel):
    text: str


class FlushTimes(Instrument):
    """Each flush's start time and duration."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.seconds: list[float] = []

    def flushed(self, seconds: float, frames: int, nbytes: int) -> None:
        now = time.perf_counter()
        self.starts.append(now - seconds)
        self.seconds.append(seconds)


def make(path: Path) -> SyncServer:
    server = SyncServer(
        NetworkSettings(ping_interval=None),
        SyncSettings(max_update_rate_hz=FLUSH_HZ),
        state=path,
        state_settings=StateSettings(save_interval=3600),  # (the bench saves itself)
        devtools=False,
        metrics=False,
    )
    for model in (Position, Status, Name):
        server.sync_component(model)
    return server


def fill(server: SyncServer, entities: int) -> list[int]:
    world = server.world
    rng = random.Random(28)
    states = ("idle", "running", "stopped")
    return [
        world.spawn(
            Position(x=rng.uniform(-1e3, 1e3), y=rng.uniform(-1e3, 1e3)),
            Status(state=rng.choice(states), speed=round(rng.random(), 3)),
            Name(text=f"robot {i:06d}"),
        )
        for i in range(entities)
    ]


def wire_bytes_per_value(server: SyncServer) -> float:
    """The mean size of each stored value as a msgpack SYNC item ``[entity, [fields]]``."""
    total = count = 0
    for model in (Position, Status, Name):
        for entity, entry in server.world.peek(model).items():
            total += len(msgpack_encode((entity, entry_fields(entry))))
            count += 1
    return total / count


def intervals(starts: list[float], since: float, until: float) -> list[float]:
    inside = [t for t in starts if since <= t <= until]
    return [b - a for a, b in itertools.pairwise(inside)]


async def producer(server: SyncServer, ids: list[int], stop: asyncio.Event) -> None:
    world = server.world
    rng = random.Random(1)
    loop = asyncio.get_running_loop()
    period = 1.0 / FLUSH_HZ
    start = loop.time()
    tick = 0
    while not stop.is_set():
        tick += 1
        for entity in rng.sample(ids, CHANGES_PER_TICK):
            world.insert(entity, Position(x=rng.uniform(-1e3, 1e3), y=rng.uniform(-1e3, 1e3)))
        await asyncio.sleep(max(0.0, start + tick * period - loop.time()))


async def one_run(
    server: SyncServer, ids: list[int], flushes: FlushTimes, seconds: float, saving_first: bool
) -> dict[str, Any]:
    stop = asyncio.Event()
    task = asyncio.create_task(producer(server, ids, stop))
    await asyncio.sleep(0.5)  # (settle)
    out: dict[str, Any] = {"saves": []}
    for phase in ("saving", "quiet") if saving_first else ("quiet", "saving"):
        started = time.perf_counter()
        if phase == "quiet":
            await asyncio.sleep(seconds)
        else:
            while time.perf_counter() - started < seconds:
                out["saves"].append(await server.save_state())
        out[phase] = intervals(flushes.starts, started, time.perf_counter())
        out[phase + "_flush"] = [
            s
            for t, s in zip(flushes.starts, flushes.seconds, strict=True)
            if started <= t <= time.perf_counter()
        ]
    stop.set()
    await task
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def bench(entities: int, seconds: float, runs: int, folder: Path) -> dict[str, Any]:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    path = folder / "bench.state"
    server = make(path)
    server.load_state()
    ids = fill(server, entities)
    flushes = FlushTimes()
    server.instrument(flushes)
    results: list[dict[str, Any]] = []
    async with server.serve("127.0.0.1", 0) as (_, port):
        hello = msgpack.packb([3, 1, "Position", None, {}])
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BENCH / "_client.py"),
            str(port),
            "1",
            str(10**9),
            "0",
            hello.hex(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert client.stdout is not None
            ready = await asyncio.wait_for(client.stdout.readline(), 30)
            assert ready.strip() == b"ready", ready
            # the client's snapshot goes out in parts, one per flush: wait for it
            parts = -(-entities // server.settings.max_snapshot_items)
            await asyncio.sleep(0.2 + parts / FLUSH_HZ * 3)
            for run in range(runs):
                results.append(await one_run(server, ids, flushes, seconds, run % 2 == 1))
        finally:
            client.kill()
            await client.wait()
    file_bytes = path.stat().st_size
    values = entities * 3
    loads = []
    for _ in range(max(1, min(runs, 3))):
        fresh = make(path)
        started = time.perf_counter()
        loaded = fresh.load_state()
        loads.append(time.perf_counter() - started)
        assert loaded is not None and loaded.values == values
        del fresh
    saves = [s for r in results for s in r["saves"]]
    return {
        "entities": entities,
        "seconds": seconds,
        "runs": runs,
        "saves": len(saves),
        "save_wall": statistics.median(s.seconds for s in saves),
        "save_wall_max": max(s.seconds for s in saves),
        "save_loop": statistics.median(s.snapshot_seconds for s in saves),
        "save_loop_max": max(s.snapshot_seconds for s in saves),
        "quiet": [statistics.median(r["quiet"]) for r in results],
        "quiet_p99": statistics.median(pct(r["quiet"], 0.99) for r in results),
        "quiet_max": max(max(r["quiet"]) for r in results),
        "saving": [statistics.median(r["saving"]) for r in results],
        "saving_p99": statistics.median(pct(r["saving"], 0.99) for r in results),
        "saving_max": max(max(r["saving"]) for r in results),
        "flush_quiet": statistics.median(s for r in results for s in r["quiet_flush"]),
        "flush_saving": statistics.median(s for r in results for s in r["saving_flush"]),
        "flushes_quiet": statistics.median(len(r["quiet"]) for r in results),
        "flushes_saving": statistics.median(len(r["saving"]) for r in results),
        "load": statistics.median(loads),
        "file_bytes": file_bytes,
        "file_per_value": file_bytes / values,
        "wire_per_value": wire_bytes_per_value(server),
    }


def table(r: dict[str, Any]) -> str:
    interval = 1e3 / FLUSH_HZ
    ms = 1e3
    ratio = r["file_per_value"] / r["wire_per_value"]
    late = r["saving_max"] * ms - interval
    rows = [
        f"{r['entities']:,} entities x 3 components (Position, Status, Name), one client "
        f"subscribed to every Position, {CHANGES_PER_TICK:,} changes per tick at "
        f"{FLUSH_HZ:g} Hz (flush interval {interval:.1f} ms); {r['runs']} run(s) of 2 x "
        f"{r['seconds']:g} s, {r['saves']} saves. Medians over the runs; longest: of all runs.",
        "",
        "| measure | value | goal |",
        "|---|---:|---|",
        f"| save, wall (median / longest) | {r['save_wall'] * ms:.0f} / "
        f"{r['save_wall_max'] * ms:.0f} ms | ≤ 1,000 ms |",
        f"| of it on the event loop: the snapshot (median / longest) | "
        f"{r['save_loop'] * ms:.1f} / {r['save_loop_max'] * ms:.1f} ms | |",
        f"| flush interval, quiet: median / p99 / longest | "
        f"{statistics.median(r['quiet']) * ms:.1f} / {r['quiet_p99'] * ms:.1f} / "
        f"{r['quiet_max'] * ms:.1f} ms | |",
        f"| flush interval, saving: median / p99 / longest | "
        f"{statistics.median(r['saving']) * ms:.1f} / {r['saving_p99'] * ms:.1f} / "
        f"{r['saving_max'] * ms:.1f} ms | longest ≤ {2 * interval:.1f} ms |",
        f"| worst flush delay while saving (longest interval - {interval:.1f} ms) | "
        f"**{late:.1f} ms** ({late / interval:.2f} intervals) | ≤ 1 interval |",
        f"| flushes per phase, quiet / saving | {r['flushes_quiet']:.0f} / "
        f"{r['flushes_saving']:.0f} | |",
        f"| flush duration, quiet / saving (median) | {r['flush_quiet'] * ms:.2f} / "
        f"{r['flush_saving'] * ms:.2f} ms | |",
        f"| load into a new server | **{r['load'] * ms:.0f} ms** | ≤ 2,000 ms |",
        f"| file | {r['file_bytes'] / 1e6:.1f} MB | |",
        f"| bytes per value: file / wire | {r['file_per_value']:.1f} / "
        f"{r['wire_per_value']:.1f} = **{ratio:.2f}x** | ≤ 2x |",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 entities, 1 run of 2 x 1 s")
    parser.add_argument("--no-docs", action="store_true", help="not into docs/performance.md")
    args = parser.parse_args()
    if args.quick:
        args.entities, args.seconds, args.runs = 2_000, 1.0, 1
    with tempfile.TemporaryDirectory(prefix="pl3xus-persist-") as folder:
        result = asyncio.run(bench(args.entities, args.seconds, args.runs, Path(folder)))
    name = "persist_quick" if args.quick else "persist"
    command = "python bench/persist.py" + (" --quick" if args.quick else "")
    publish(name, command, table(result), docs=not (args.no_docs or args.quick))


if __name__ == "__main__":
    main()
