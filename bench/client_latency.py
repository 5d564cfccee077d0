"""End-to-end latency: from a server-side change to the client seeing it.

- **sync**: ``world.insert(probe, Probe(seq, t=now))`` on a ``SyncServer`` at 1,000 changes/s
  → the client ``SyncProvider``'s ``components(Probe)`` signal emission.
- **baseline**: a raw ``websockets`` server sending the same ``[seq, t]`` msgpack message at
  the same rate → a raw ``websockets`` client's ``recv()``.

Both are one way, timed with ``time.monotonic()`` (one clock for every process on a
machine); clients run in another process (``bench/_latency_client.py``). The sync path also
waits for its flush (at most one per ``1 / max_update_rate_hz``) and conflates: a client
sees the latest value at each flush, so its latency is measured on that value. Goal: sync
p99 <= 3 x baseline p99 + one flush interval.

Also measured, in-process: client apply throughput, items/s from a decoded SYNC frame to
the signal's emission.

    python bench/client_latency.py            # N = 1, 10, 100; about a minute
    python bench/client_latency.py --clients 10 --seconds 1 --no-docs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import msgpack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _latency_client import Probe  # noqa: E402
from _report import publish  # noqa: E402
from net_fanout import pin  # noqa: E402

from pl3xus_rx import NetworkSettings, SyncServer, SyncSettings  # noqa: E402

RATE_HZ = 1000
FLUSH_HZ = 60.0


async def spawn(mode: str, url: str, n: int, seconds: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("_latency_client.py")),
        mode,
        url,
        str(n),
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"ready", line
    return proc


async def produce(change: Any, until: asyncio.Future[Any]) -> int:
    """Call ``change(seq)`` RATE_HZ times per second until ``until`` is done."""
    loop = asyncio.get_running_loop()
    seq = 0
    start = loop.time()
    while not until.done():
        seq += 1
        change(seq)
        next_at = start + seq / RATE_HZ
        delay = next_at - loop.time()
        await asyncio.sleep(max(0.0, delay))
    return seq


async def bench_sync(n: int, seconds: float) -> dict[str, Any]:
    server = SyncServer(
        NetworkSettings(ping_interval=None, max_connections=None),
        SyncSettings(max_update_rate_hz=FLUSH_HZ),
    )
    server.sync_component(Probe)
    probe = server.world.spawn(Probe(seq=0, t=time.monotonic()))
    async with server.serve("127.0.0.1", 0) as (host, port):
        proc = await spawn("sync", f"ws://{host}:{port}/", n, seconds)
        assert proc.stdout is not None
        result_line = asyncio.ensure_future(proc.stdout.readline())
        await produce(
            lambda s: server.world.insert(probe, Probe(seq=s, t=time.monotonic())), result_line
        )
        await proc.wait()
        return dict(json.loads(result_line.result()))


async def bench_raw(n: int, seconds: float) -> dict[str, Any]:
    from websockets.asyncio.server import broadcast, serve

    conns: set[Any] = set()

    async def handler(ws: Any) -> None:
        conns.add(ws)
        await ws.wait_closed()
        conns.discard(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        proc = await spawn("raw", f"ws://127.0.0.1:{port}/", n, seconds)
        assert proc.stdout is not None
        result_line = asyncio.ensure_future(proc.stdout.readline())
        pack = msgpack.Packer().pack
        await produce(lambda s: broadcast(conns, pack([s, time.monotonic()])), result_line)
        await proc.wait()
        return dict(json.loads(result_line.result()))


def apply_throughput() -> tuple[float, float]:
    """Items/s from a SYNC frame's bytes to the signal emission (no sockets), and the same
    items through a naive client's work in the same run: msgpack unpack, then pydantic
    validation of each item (the baseline)."""
    from client_sync import ClientTypeRegistry, SyncProvider
    from client_sync.session import SyncArrived
    from pl3xus_rx.protocol import FrameKind
    from pl3xus_rx.sync import ComponentRegistry, SyncEngine
    from pl3xus_rx.world import World

    world = World()
    registry = ComponentRegistry()
    registry.add(Probe)
    engine = SyncEngine(world, registry, SyncSettings(max_update_rate_hz=1e9))
    ents = [world.spawn(Probe(seq=0, t=0.0)) for _ in range(10_000)]
    engine.add_client(1)
    engine.handle_frame(1, True, [FrameKind.SUBSCRIBE, 1, "Probe", None, {}])
    frames = [engine.flush(0.0)[0][1]]
    for k in range(1, 21):
        for i in range(0, 10_000, 10):
            world.insert(ents[(i + k) % 10_000], Probe(seq=k, t=float(k)))
        frames.append(engine.flush(float(k))[0][1])

    def ours() -> float:
        provider = SyncProvider("ws://unused", ClientTypeRegistry.builder().register(Probe).build())
        provider._session.store.rebind(registry.wire_table())  # internal: no socket
        signal = provider.components(Probe)
        emissions: list[Any] = []
        sub = provider._sub(Probe, None)
        provider._acquire(sub)  # as if subscribed; sub id 1 matches the engine's
        signal.subscribe(emissions.append)
        start = time.perf_counter()
        items = 0
        for data in frames:
            frame = msgpack.unpackb(data, strict_map_key=False)
            provider._arrived.append((SyncArrived(frame), 0.0))  # as _on_frame does
            provider._apply_arrived(None)
            items += sum(len(g[2]) for g in frame[2])
        elapsed = time.perf_counter() - start
        assert len(emissions) >= len(frames)
        return items / elapsed

    def baseline() -> float:
        names = list(Probe.model_fields)
        state: dict[int, Probe] = {}
        start = time.perf_counter()
        items = 0
        for data in frames:
            frame = msgpack.unpackb(data, strict_map_key=False)
            for group in frame[2]:
                for entity, values in group[2]:
                    state[entity] = Probe.model_validate(dict(zip(names, values, strict=True)))
                    items += 1
        elapsed = time.perf_counter() - start
        assert len(state) == 10_000
        return items / elapsed

    # best of three each, interleaved (a noisy machine favours neither)
    runs = [(ours(), baseline()) for _ in range(3)]
    return max(r[0] for r in runs), max(r[1] for r in runs)


def table(
    rows: list[tuple[int, dict[str, Any], dict[str, Any]]], throughput: tuple[float, float]
) -> str:
    interval_ms = 1000 / FLUSH_HZ
    lines = [
        f"{RATE_HZ:,} changes/s on one entity; flush cap {FLUSH_HZ:g} Hz "
        f"({interval_ms:.1f} ms); one-way latency in ms.",
        "",
        "| N clients | baseline p50 | baseline p99 | sync p50 | sync p99 "
        "| goal: sync p99 ≤ | met |",
        "|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for n, raw, sync in rows:
        goal = 3 * raw["p99_us"] / 1000 + interval_ms
        met = "yes" if sync["p99_us"] / 1000 <= goal else "no"
        lines.append(
            f"| {n} | {raw['p50_us'] / 1000:.2f} | {raw['p99_us'] / 1000:.2f} "
            f"| {sync['p50_us'] / 1000:.2f} | {sync['p99_us'] / 1000:.2f} | {goal:.2f} | {met} |"
        )
    ours, naive = throughput
    lines += [
        "",
        "Client apply (frame bytes → signal, 10,000-item snapshot then 1,000 items per frame):",
        "",
        "| path | items/s | share of baseline | goal |",
        "|---|---:|---:|---|",
        f"| baseline: msgpack unpack + pydantic `model_validate` per item | {naive:,.0f} "
        "| 100 % | |",
        f"| `SyncProvider` (unpack, store, typed values, signal emission) | {ours:,.0f} "
        f"| {100 * ours / naive:.0f} % | ≥ 60 % |",
    ]
    return "\n".join(lines)


async def main(clients: list[int], seconds: float) -> list[tuple[int, Any, Any]]:
    pin(0)
    rows = []
    for n in clients:
        raw = await bench_raw(n, seconds)
        sync = await bench_sync(n, seconds)
        print(
            f"N={n:<4} raw p50 {raw['p50_us'] / 1000:.2f} ms p99 {raw['p99_us'] / 1000:.2f} ms"
            f" | sync p50 {sync['p50_us'] / 1000:.2f} ms p99 {sync['p99_us'] / 1000:.2f} ms",
            flush=True,
        )
        rows.append((n, raw, sync))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Latency benchmark (see docstring).")
    parser.add_argument("--clients", default="1,10,100")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    ns = [int(x) for x in args.clients.split(",")]
    rows = asyncio.run(main(ns, args.seconds))
    text = table(rows, apply_throughput())
    publish("client_latency", "python bench/client_latency.py", text, docs=not args.no_docs)
