"""Where a flush's CPU goes: an accounted profile of the sync fan-out job.

The job of ``bench/sync_fanout.py`` (10,000 ``Position(x, y)`` entities, 1,000 random updates
per tick, every client subscribed to every Position), but each tick starts from raw
``(entity, x, y)`` values, as a producer has them: build the models, ``world.insert``, flush.
Two setups per C:

- **in-process**: a bare ``SyncEngine``; the flush hands each frame to a sink (no sockets,
  no event loop): the update path, the engine and frame assembly only;
- **sockets**: a ``SyncServer`` on 127.0.0.1, C bare clients in another process (pinned to
  the other core), paced as ``sync_fanout.py`` paces them; at the end of the window the
  server's queues and socket buffers are drained inside the window, so every byte sent is
  paid for.

The profile: a sampler driven by ``ITIMER_PROF`` (it fires per millisecond of this
process's CPU time, user + system, never while the process sleeps in ``epoll``). Each sample
is weighted by the CPU time measured since the previous one, and the time the garbage
collector ran in between (``gc.callbacks``) is moved into its own row, so the rows add up
to the CPU measured between the first and the last sample; the table says how close that
is to the whole window's ``process_time``. With ``--sampler py-spy`` (needs ptrace) the same
classification runs over ``py-spy record --format raw`` stacks instead, weighted by count.

Usage::

    python bench/flush_profile.py                      # C = 1, 10, 100; writes docs
    python bench/flush_profile.py --clients 10 --seconds 2 --no-docs
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import linecache
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import publish  # noqa: E402
from net_fanout import pin, spawn_clients  # noqa: E402

from pl3xus_rx import NetworkSettings, SyncServer, SyncSettings  # noqa: E402
from pl3xus_rx.sync import ComponentRegistry, SyncEngine  # noqa: E402
from pl3xus_rx.world import World  # noqa: E402

ENTITIES = 10_000
PER_FLUSH = 1_000
BACKLOG_FRAMES = 20
BATCHES = 64
INTERVAL = 0.001  # seconds of CPU time between samples

Frame = tuple[str, str, int]  # (file, function, line)
Stack = tuple[Frame, ...]  # leaf first


class Position(BaseModel):
    x: float
    y: float


# ------------------------------------------------------------------ classification

ROWS = [
    ("update: model construction", "update path"),
    ("update: World.insert", "update path"),
    ("update: change tracking", "update path"),
    ("update: caller's loop", "update path"),
    ("engine: drain + flush bookkeeping", "per flush"),
    ("engine: per-subscription emission", "per subscription"),
    ("encoding: items + shared body", "per flush"),
    ("per client: frame assembly", "per client"),
    ("per client: delivery + channel", "per client"),
    ("per client: websockets framing", "per client"),
    ("per client: socket write", "per client"),
    ("server: flush scheduling + wrapper", "per flush"),
    ("event loop", "per flush"),
    ("GC", "all"),
    ("bench: pacing + drain polls", "harness"),
    ("other", "?"),
]


def _tracking_lines() -> range:
    """The lines of World.insert's hot path that record the change (the inlined tracker)."""
    lines, start = inspect.getsourcelines(World.insert)
    for k, text in enumerate(lines):
        if "for tracker in kind.trackers:  # ChangeTracker" in text:
            return range(start + k, start + k + 9)
    return range(0)


TRACKING = _tracking_lines()
THIS = Path(__file__).name


def classify(stack: Stack) -> str:
    """The row of one sample: the innermost frame that names a row decides."""
    for file, func, line in stack:
        f = file.replace("\\", "/")
        if "/pydantic/" in f and func == "__init__":
            return "update: model construction"
        if f.endswith("pl3xus_rx/world.py"):
            if func == "insert":
                return "update: change tracking" if line in TRACKING else "update: World.insert"
            if func in ("on_first", "_record"):
                return "update: change tracking"
            return "update: World.insert"
        if f.endswith("websockets/asyncio/connection.py") or "/websockets/" in f:
            if func in ("write", "send_data") and "asyncio/connection" in f:
                return "per client: socket write"
            return "per client: websockets framing"
        if f.endswith("asyncio/selector_events.py") and ("write" in func or "send" in func):
            return "per client: socket write"
        if f.endswith("pl3xus_rx/net/_websocket.py"):
            # the link writes its frames itself: the lines that hand them to the socket (a
            # builtin has no frame of its own) are the socket write
            text = linecache.getline(file, line)
            if "os.writev(" in text or "transport.write(" in text:
                return "per client: socket write"
            return "per client: delivery + channel"
        if f.endswith("pl3xus_rx/net/_connection.py"):
            return "per client: delivery + channel"
        if f.endswith("pl3xus_rx/_delivery.py") or f.endswith("pl3xus_rx/net/_network.py"):
            return "per client: delivery + channel"
        if "pl3xus_rx/protocol/" in f:
            continue  # the codec: charged to its caller (the shared body or a frame's head)
        if f.endswith("pl3xus_rx/sync/_wire.py"):
            if func == "send_frames":
                return "per client: frame assembly"
            return "encoding: items + shared body"
        if f.endswith("pl3xus_rx/sync/_encoding.py") or "/msgpack/" in f:
            return "encoding: items + shared body"
        if f.endswith("pl3xus_rx/sync/_engine.py") and func in ("_emit_changes", "_hold"):
            return "engine: per-subscription emission"
        if f.endswith("pl3xus_rx/sync/_groups.py"):
            return "engine: per-subscription emission"
        if "pl3xus_rx/sync/" in f:
            return "engine: drain + flush bookkeeping"
        if "pl3xus_rx/" in f and "/bench/" not in f:
            return "server: flush scheduling + wrapper"
        if f.endswith(THIS):
            if func == "_tick":
                return "update: caller's loop"
            if func == "send":
                return "per client: delivery + channel"  # the in-process sink
            if func == "_sample":
                continue  # the sampler itself: charged to what it interrupted
            return "bench: pacing + drain polls"
        if "/asyncio/" in f or f.endswith("selectors.py"):
            return "event loop"
    return "other"


# ------------------------------------------------------------------ the in-process sampler


class Sampler:
    """ITIMER_PROF sampling, each sample weighted by the CPU time since the last one."""

    def __init__(self) -> None:
        self.weights: Counter[Stack] = Counter()
        self.gc = 0.0
        self.samples = 0
        self._gc_started = 0.0
        self._gc_total = 0.0
        self._gc_seen = 0.0
        self._last = 0.0
        self.first = self.last = 0.0

    def _on_gc(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.process_time()
        else:
            self._gc_total += time.process_time() - self._gc_started

    def _sample(self, _sig: int, frame: Any) -> None:
        now = time.process_time()
        spent = now - self._last
        self._last = now
        gc_part = self._gc_total - self._gc_seen
        self._gc_seen = self._gc_total
        self.gc += gc_part
        stack = []
        while frame is not None:
            code = frame.f_code
            stack.append((code.co_filename, code.co_name, frame.f_lineno))
            frame = frame.f_back
        self.weights[tuple(stack)] += max(0.0, spent - gc_part)
        self.samples += 1
        self.last = now

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        signal.signal(signal.SIGPROF, self._sample)
        self.first = self._last = self.last = time.process_time()
        signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)

    def stop(self) -> dict[str, float]:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)
        gc.callbacks.remove(self._on_gc)
        rows: Counter[str] = Counter()
        for stack, w in self.weights.items():
            rows[classify(stack)] += w
        rows["GC"] += self.gc
        return dict(rows)


class PySpy:
    """``py-spy record --format raw`` on this process; rows weighted by sample counts."""

    def __init__(self) -> None:
        fd, self.out = tempfile.mkstemp(suffix=".txt")
        os.close(fd)
        self.proc: subprocess.Popen[bytes] | None = None
        self.samples = 0

    def start(self) -> None:
        exe = shutil.which("py-spy")
        assert exe is not None
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(os.getpid()),
                "--rate",
                "1000",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                self.out,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # attached

    def stop(self) -> dict[str, float]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)
        counts: Counter[str] = Counter()
        for line in Path(self.out).read_text().splitlines():
            body, _, n = line.rpartition(" ")
            stack = []
            for part in reversed(body.split(";")):  # raw is root first
                name, _, loc = part.partition(" (")
                file, _, ln = loc.rstrip(")").rpartition(":")
                stack.append((file, name.strip(), int(ln) if ln.isdigit() else 0))
            counts[classify(tuple(stack))] += int(n)
        self.samples = sum(counts.values())
        os.unlink(self.out)
        return {k: v for k, v in counts.items()}


# ------------------------------------------------------------------ the job


def plan(rng: random.Random) -> list[list[tuple[int, float, float]]]:
    out = []
    for _ in range(BATCHES):
        ids = rng.sample(range(ENTITIES), PER_FLUSH)
        out.append(
            [(i, round(rng.uniform(-100, 100), 3), round(rng.uniform(-100, 100), 3)) for i in ids]
        )
    return out


def _tick(world: World, ents: list[Any], batch: list[tuple[int, float, float]], t: float) -> None:
    """What a producer does per tick: a model from raw values, then insert it."""
    insert = world.insert
    for i, x, y in batch:
        insert(ents[i], Position(x=x + t, y=y))


def run_inprocess(clients: int, seconds: float, sampler: Any) -> tuple[int, float, dict]:
    world = World()
    registry = ComponentRegistry()
    registry.add(Position)
    engine = SyncEngine(world, registry, SyncSettings(max_update_rate_hz=100_000))
    ents = [world.spawn(Position(x=0, y=0)) for _ in range(ENTITIES)]
    for c in range(1, clients + 1):
        engine.add_client(c)
        engine.handle_frame(c, True, [3, 1, "Position", None, {}])
    sink: list[int] = [0]

    def send(_connection: int, data: bytes | str) -> None:
        sink[0] += len(data)

    engine.flush_into(0.0, send)  # the snapshots
    batches = plan(random.Random(7))
    ticks = 0
    now = 1.0
    cpu0 = time.process_time()
    sampler.start()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        _tick(world, ents, batches[ticks % BATCHES], ticks * 1e-3)
        engine.flush_into(now, send)
        ticks += 1
        now += 1.0
    rows = sampler.stop()
    cpu = time.process_time() - cpu0
    return ticks, cpu, rows


async def run_sockets(clients: int, seconds: float, sampler: Any) -> tuple[int, float, dict]:
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
    batches = plan(random.Random(7))
    async with server.serve("127.0.0.1", 0) as (_, port):
        hello = msgpack.packb([3, 1, "Position", None, {}])
        proc = await spawn_clients(port, clients, 10**9, skip=2, hello=hello)
        while server.engine.statistics().subscriptions < clients:
            await asyncio.sleep(0.01)
        while server.engine.statistics().frames < clients:  # snapshots out
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        conns = list(server.net._connections.values())  # internal, for pacing only
        links = [c.link._transport for c in conns]  # type: ignore[attr-defined]
        ticks = 0
        cpu0 = time.process_time()
        sampler.start()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            _tick(world, ents, batches[ticks % BATCHES], ticks * 1e-3)
            ticks += 1
            await asyncio.sleep(0)  # the flush runs here: the loop is free
            while any(len(c.queue) > BACKLOG_FRAMES for c in conns):
                await asyncio.sleep(0.001)
        # drain inside the window: every frame of these ticks reaches the kernel
        while any(c.queue for c in conns) or any(t.get_write_buffer_size() for t in links):
            await asyncio.sleep(0.001)
        rows = sampler.stop()
        cpu = time.process_time() - cpu0
        proc.kill()
        await proc.wait()
    return ticks, cpu, rows


# ------------------------------------------------------------------ report


def table(results: list[tuple[str, int, int, float, dict, float, int]]) -> str:
    head = [f"{mode} C={c}" for mode, c, *_ in results]
    lines = [
        f"{ENTITIES:,} entities, {PER_FLUSH:,} random `Position(x, y)` updates per tick from raw "
        "`(entity, x, y)` values (model built in the tick), every client subscribed to every "
        "Position. Server CPU **ms per flush** by where it went (sampled on CPU time, "
        "`ITIMER_PROF`, asked for every 1 ms of CPU; the kernel may deliver them more "
        "coarsely, every 4 ms here; GC from `gc.callbacks`).",
        "",
        "| where | counts per | " + " | ".join(head) + " |",
        "|---|---|" + "---:|" * len(head),
    ]
    for row, per in ROWS:
        cells = []
        for _mode, _c, ticks, _cpu, rows, _scale, _n in results:
            v = rows.get(row, 0.0) * _scale / ticks * 1e3
            cells.append(f"{v:.3f}" if v >= 0.0005 else "-")
        if any(x != "-" for x in cells):
            lines.append(f"| {row} | {per} | " + " | ".join(cells) + " |")
    sums, meas, flushes, cover = [], [], [], []
    for _mode, _c, ticks, cpu, rows, scale, _n in results:
        total = sum(rows.values()) * scale
        harness = rows.get("bench: pacing + drain polls", 0.0) * scale
        sums.append(f"**{total / ticks * 1e3:.3f}**")
        meas.append(f"{cpu / ticks * 1e3:.3f}")
        cover.append(f"{total / cpu:.0%}")
        flushes.append(f"{(total - harness) / ticks * 1e3:.3f}")
    lines.append("| **sum of the rows** | | " + " | ".join(sums) + " |")
    lines.append("| measured `process_time` / flush | | " + " | ".join(meas) + " |")
    lines.append("| rows / measured | | " + " | ".join(cover) + " |")
    lines.append(
        "| samples (mean CPU between two) | | "
        + " | ".join(f"{r[6]} ({r[3] / max(1, r[6]) * 1e3:.1f} ms)" for r in results)
        + " |"
    )
    lines.append("| server CPU / flush without the harness | | " + " | ".join(flushes) + " |")
    lines.append("| flushes in the window | | " + " | ".join(str(r[2]) for r in results) + " |")
    return "\n".join(lines)


async def main(clients: list[int], seconds: float, which: str, setups: list[str]) -> str:
    pin(0)
    results = []
    for c in clients:
        for mode in setups:
            sampler: Any = PySpy() if which == "py-spy" else Sampler()
            if mode == "in-process":
                ticks, cpu, rows = run_inprocess(c, seconds, sampler)
            else:
                ticks, cpu, rows = await run_sockets(c, seconds, sampler)
            # py-spy counts samples: scale them to the measured CPU (stated in the table)
            scale = cpu / sum(rows.values()) if which == "py-spy" else 1.0
            total = sum(rows.values()) * scale
            print(
                f"{mode:<10} C={c:<4} {ticks:5d} flushes {cpu / ticks * 1e3:7.3f} ms/flush "
                f"measured, rows {total / cpu:.1%} of it",
                flush=True,
            )
            results.append((mode, c, ticks, cpu, rows, scale, sampler.samples))
    return table(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Accounted flush profile (see docstring).")
    parser.add_argument("--clients", default="1,10,100")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sampler", choices=["itimer", "py-spy"], default="itimer")
    parser.add_argument("--setups", default="in-process,sockets")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    cs = [int(x) for x in args.clients.split(",")]
    text = asyncio.run(main(cs, args.seconds, args.sampler, args.setups.split(",")))
    publish(
        "flush_profile",
        f"python bench/flush_profile.py --seconds {args.seconds:g}",
        text,
        docs=not args.no_docs,
    )
