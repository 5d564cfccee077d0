"""The flight recorder (issue 29): what recording costs, how big the file is, how fast a seek is.

1. **CPU.** The demo cell at ``--sensors 10000`` (20,000 readings a second: ``build_cell``
   and ``simulate`` in a server process pinned to core 0, served as ``pl3xus-rx demo``
   serves it: 30 flushes a second at most) with one bare WebSocket client (core 1; its CPU
   not counted) subscribed to every demo type. Each round runs two fresh server processes,
   one without and one with ``SyncServer(record=...)``, in alternating order; after the
   client's snapshots are done and a warm-up, the server's CPU seconds per wall second are
   measured over the same window length. Recording's share = (with - without) / with; goal
   ≤ 10 %. As a cross-check, the time spent inside the recorder's hook (its ``changes``
   and ``flushed``, writes and keyframes included) is timed in the server with the
   recorder.
2. **Bytes.** In the runs with the recorder: file bytes per recorded item (keyframes
   included) against the SYNC frame bytes per item the client was sent, same window; goal
   ≤ 1.5x.
3. **Seek.** A 1-hour recording at the demo's density, written synthetically (an hour
   cannot be waited for) but in the real format: the header and first keyframe come from a
   real ``ServerRecorder`` on a demo World of 10,000 sensors; then 30 BATCH records a
   second, each with 667 random sensors' new readings (the item encoding the recorder
   uses), and a KEYFRAME every 5 s (the default ``keyframe_seconds``); the other demo types
   stay as the first keyframe has them. It is served paused by a replay server (core 0, as
   ``pl3xus-rx replay FILE --paused`` does) to a ``client_sync`` provider observing
   ``components(Sensor)`` (core 1), which seeks to random instants across the hour and
   just before keyframes (the most batches to replay); timed from sending the
   ``pl3xus.replay`` seek to its reply, which follows the flush that carried the changes,
   so the client's view shows the instant then (checked against ``state_at`` for some).
   Goal ≤ 200 ms. The server times its parts (``state_at``, ``Replayer._reconcile``, the
   flush); the rest is the wire and the client. Also: the time to open (index) the file.

    python bench/recording.py                  # 5 rounds x 2 x 10 s, then the hour; ~8 min
    python bench/recording.py --quick --no-docs    # a quick pass (tests/test_bench.py)

The table goes to bench/results/recording.md and docs/performance.md (not with
``--no-docs``); with ``--quick``, to bench/results/recording_quick.md only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _client import masked_binary_frame, strip_handshake, take_frames
from _report import publish

from pl3xus_rx.protocol import FrameKind

BENCH = Path(__file__).resolve()
FLUSH_HZ = 30.0
KEYFRAME_SECONDS = 5.0
PAUSE = 0.3  # seconds between seeks


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


# ---------------------------------------------------------------- 1, 2: the demo server


class HookTimer:
    """Wraps the recorder's hook methods: the CPU time spent inside them."""

    def __init__(self, encoder: Any) -> None:
        self.seconds = 0.0
        for name in ("changes", "flushed"):
            setattr(encoder, name, self.timed(getattr(encoder, name)))

    def timed(self, method: Any) -> Any:
        def call(*args: Any) -> None:
            started = time.thread_time()
            try:
                method(*args)
            finally:
                self.seconds += time.thread_time() - started

        return call


async def demo_role(sensors: int, updates: float, record: str) -> None:
    """The demo cell, as ``pl3xus-rx demo`` runs it (``record``: a path, or ``-`` for
    none). Prints the port; then answers each line on stdin with its counters; stops at
    end of input."""
    from pl3xus_rx import NetworkSettings, SyncServer, SyncSettings
    from pl3xus_rx.demo import DEMO_APP, build_cell, simulate
    from pl3xus_rx.recording import RecordSettings

    pin(0)
    server = SyncServer(
        NetworkSettings(),
        SyncSettings(max_update_rate_hz=FLUSH_HZ),
        record=None if record == "-" else RecordSettings(record, app=DEMO_APP),
    )
    cell = build_cell(server, sensors=sensors, sensor_updates=updates)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with server.serve("127.0.0.1", 0) as (_, port):
        recorder = server.recorder
        timer = HookTimer(recorder.encoder) if recorder and recorder.encoder else None
        types = [reg.name for reg in server.registry]
        print(json.dumps({"port": port, "types": types}), flush=True)
        sim = asyncio.create_task(simulate(server, cell, stop=stop))
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                break
            s = server.engine.statistics()
            out: dict[str, Any] = {
                "cpu": time.process_time(),
                "wall": time.perf_counter(),
                "flushes": s.flushes,
                "frames": s.frames,
                "frame_bytes": s.frame_bytes,
                "items_sent": s.items_sent,
                "subscriptions": s.subscriptions,
                "snapshots": s.snapshots,
                "snapshots_under_way": s.snapshots_under_way,
            }
            if recorder is not None and recorder.encoder and recorder.files and timer:
                out["rec_items"] = recorder.encoder.items
                out["rec_bytes"] = recorder.files.bytes
                out["rec_records"] = recorder.files.records
                out["rec_hook"] = timer.seconds
                out["rec_failed"] = recorder.files.failed
            print(json.dumps(out), flush=True)
        stop.set()
        await sim


class Reader(asyncio.Protocol):
    """A bare WebSocket client: counts the frames and bytes it is sent."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.handshaken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.frames = self.bytes = 0

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.handshaken.done():
            if not strip_handshake(self.buf):
                return
            self.handshaken.set_result(None)
        for opcode, length, _ in take_frames(self.buf):
            if opcode in (1, 2):
                self.frames += 1
                self.bytes += length


async def client_role(port: int, types: list[str]) -> None:
    """One bare client subscribed to every type in ``types``; runs until stdin closes."""
    pin(1)
    loop = asyncio.get_running_loop()
    transport, reader = await loop.create_connection(Reader, "127.0.0.1", port)
    transport.write(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await asyncio.wait_for(reader.handshaken, 10)
    for sub, name in enumerate(types, 1):
        frame = msgpack.packb([int(FrameKind.SUBSCRIBE), sub, name, None, {}])
        transport.write(masked_binary_frame(frame))
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    transport.close()


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def ask(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"stats\n")
    await proc.stdin.drain()
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    return json.loads(line)  # type: ignore[no-any-return]


async def finish(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def one_phase(
    sensors: int, updates: float, record: Path | None, warm: float, seconds: float
) -> dict[str, Any]:
    """One fresh demo server (with or without the recorder) and one client: the server's
    counters over ``seconds`` once the client is synced and ``warm`` seconds passed."""
    server = await spawn("--role", "demo", str(sensors), str(updates), str(record or "-"))
    client = None
    try:
        assert server.stdout is not None
        hello = json.loads(await asyncio.wait_for(server.stdout.readline(), 60))
        client = await spawn("--role", "client", str(hello["port"]), *hello["types"])
        assert client.stdout is not None
        assert (await asyncio.wait_for(client.stdout.readline(), 30)).strip() == b"ready"
        deadline = time.monotonic() + 60
        while True:  # until every snapshot went out
            got = await ask(server)
            n = len(hello["types"])
            synced = got["subscriptions"] == n and got["snapshots"] >= n
            if synced and not got["snapshots_under_way"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the client's snapshots did not complete: {got}")
            await asyncio.sleep(0.1)
        await asyncio.sleep(warm)
        first = await ask(server)
        await asyncio.sleep(seconds)
        last = await ask(server)
    finally:
        if client is not None:
            await finish(client)
        await finish(server)
    out = {key: last[key] - first[key] for key in last if isinstance(last[key], int | float)}
    out["failed"] = last.get("rec_failed")
    if record is not None:
        out["file"] = file_split(record)
    return out


def file_split(path: Path) -> dict[str, int]:
    """A recording's bytes by record kind, and its items (BATCH items apart)."""
    from pl3xus_rx.protocol import RecordKind
    from pl3xus_rx.recording import open_recording

    recording = open_recording(path)
    out = {"total": path.stat().st_size, "batch": 0, "keyframe": 0, "batch_items": 0}
    ends = [*recording.offsets[1:], out["total"]]
    for index in range(len(recording)):
        size = ends[index] - recording.offsets[index]
        kind = recording.kind(index)
        if kind == RecordKind.BATCH:
            out["batch"] += size
            out["batch_items"] += sum(len(t[1]) for t in recording.body(index)[1])
        elif kind == RecordKind.KEYFRAME:
            out["keyframe"] += size
    return out


async def cost(
    sensors: int, updates: float, rounds: int, warm: float, seconds: float, folder: Path
) -> list[dict[str, Any]]:
    """``rounds`` rounds of (without, with) in alternating order."""
    results: list[dict[str, Any]] = []
    for r in range(rounds):
        row: dict[str, Any] = {}
        order = ("off", "on") if r % 2 == 0 else ("on", "off")
        for variant in order:
            path = folder / f"demo-{r}.pl3xrec" if variant == "on" else None
            row[variant] = await one_phase(sensors, updates, path, warm, seconds)
            if path is not None:
                path.unlink()
            cpu = row[variant]["cpu"] / row[variant]["wall"]
            print(f"  round {r + 1} {variant:>3}: server CPU {cpu:.3f} s/s", file=sys.stderr)
        results.append(row)
    return results


# ---------------------------------------------------------------- 3: the synthetic hour


def write_hour(path: Path, sensors: int, seconds: float, per_flush: int) -> dict[str, Any]:
    """A recording of ``seconds`` at FLUSH_HZ flushes a second, ``per_flush`` random sensors
    changed in each, a keyframe every KEYFRAME_SECONDS: header and first keyframe by a real
    recorder on a demo World; the records after them encoded as the recorder encodes."""
    from pl3xus_rx import SyncServer
    from pl3xus_rx.demo import DEMO_APP, Sensor, build_cell
    from pl3xus_rx.protocol import RecordKind, encode_record, msgpack_encode
    from pl3xus_rx.recording import FlushEncoder, RecordFiles, RecordSettings
    from pl3xus_rx.sync._wire import encode_items, msgpack_array_header

    started = time.perf_counter()
    server = SyncServer(devtools=False, metrics=False)
    cell = build_cell(server, sensors=sensors)
    world = server.world
    regs = list(server.registry)
    clock = [1.7e9]  # the recording's time: wall-clock seconds, as a server's flushes have
    settings = RecordSettings(path, app=DEMO_APP, keyframe_seconds=KEYFRAME_SECONDS)
    first: list[bytes] = []
    encoder = FlushEncoder(world, regs, server.engine.encoder, first.append)

    def begin(at: float) -> tuple[Any, bytes]:
        encoder.keyframe(at)
        return encoder.header(at, origin=None, app=DEMO_APP), first[-1]

    files = RecordFiles(settings, begin, clock=lambda: clock[0])
    files.open()
    # the first keyframe, taken apart: what stays, and the sensors' rows that change
    entities, parents, types = msgpack.unpackb(first[-1][17:], strict_map_key=False)
    sensor_index = next(i for i, reg in enumerate(regs) if reg.model is Sensor)
    fixed: dict[int, tuple[int, bytes]] = {
        index: (len(items), b"".join(msgpack_encode(item) for item in items))
        for index, items in types
        if index != sensor_index
    }
    ids = list(cell["sensors"])
    rows = {}
    for entity in ids:
        s = world.get(entity, Sensor)
        assert s is not None
        rows[entity] = [s.kind, s.value, s.unit, s.rate_hz]
    noise = {"temperature": 0.15, "pressure": 0.03, "vibration": 0.05, "current": 0.1}
    step = {entity: noise[rows[entity][0]] for entity in ids}
    head2, head3, head4 = (msgpack_array_header(n) for n in (2, 3, 4))
    empty = msgpack_encode([])
    batch_head = head2 + empty + msgpack_array_header(1) + head4 + msgpack_encode(sensor_index)
    key_head = head3 + msgpack_encode(entities) + msgpack_encode(parents)
    key_head += msgpack_array_header(len(types))
    rng = random.Random(29)
    t0 = clock[0]
    flushes = round(seconds * FLUSH_HZ)
    last_key = t0
    items = 0
    for k in range(1, flushes + 1):
        at = t0 + k / FLUSH_HZ
        chosen = rng.sample(ids, per_flush)
        changed = []
        for entity in chosen:
            row = rows[entity]
            row[1] = round(row[1] + step[entity] * (rng.random() - 0.5) * 2, 3)
            changed.append((entity, tuple(row)))
        data = encode_items(True, changed)
        assert isinstance(data, bytes)
        body = b"".join((batch_head, msgpack_array_header(len(changed)), data, empty, empty))
        files.write(encode_record(RecordKind.BATCH, at, body))
        items += len(changed)
        if at - last_key >= KEYFRAME_SECONDS - 1e-9:
            parts = []
            for index in range(len(types)):
                if index == sensor_index:
                    sensor_rows = [(entity, tuple(rows[entity])) for entity in ids]
                    data = encode_items(True, sensor_rows)
                    assert isinstance(data, bytes)
                    count, joined = len(sensor_rows), data
                else:
                    count, joined = fixed[index]
                parts.append(head2 + msgpack_encode(index) + msgpack_array_header(count) + joined)
            files.write(encode_record(RecordKind.KEYFRAME, at, key_head + b"".join(parts)))
            last_key = at
    clock[0] = t0 + flushes / FLUSH_HZ
    files.close()
    return {
        "seconds_to_write": time.perf_counter() - started,
        "bytes": path.stat().st_size,
        "items": items,
        "flushes": flushes,
    }


async def replay_role(path: str, charge: bool) -> None:
    """Serve the recording paused, as ``pl3xus-rx replay FILE --paused`` does, timing the
    parts of each seek. Prints the port and the time to open the file; answers each line on
    stdin with the timings so far. ``charge``: the default rate limiter, which charges a
    connection for the server time its frames take (else ``rate_limit_frame_time=None``)."""
    from pl3xus_rx import NetworkSettings, SyncServer, SyncSettings
    from pl3xus_rx.demo import register_cell
    from pl3xus_rx.instruments import Instrument
    from pl3xus_rx.recording import ReplayServer, open_recording

    pin(0)
    started = time.perf_counter()
    recording = open_recording(path)
    opened = time.perf_counter() - started
    network = NetworkSettings() if charge else NetworkSettings(rate_limit_frame_time=None)
    server = SyncServer(network, SyncSettings(max_update_rate_hz=FLUSH_HZ))
    register_cell(server)
    replay = ReplayServer(server, recording, playing=False)
    parts: dict[str, list[float]] = {"state_at": [], "reconcile": [], "control": []}
    ends: list[float] = []  # when each control call returned
    flushes: list[tuple[float, float, int]] = []  # (end, seconds, bytes) of each flush

    def timed(name: str, method: Any) -> Any:
        def call(*args: Any) -> Any:
            began = time.perf_counter()
            try:
                return method(*args)
            finally:
                now = time.perf_counter()
                parts[name].append(now - began)
                if name == "control":
                    ends.append(now)

        return call

    recording.state_at = timed("state_at", recording.state_at)  # type: ignore[method-assign]
    replayer = replay.replayer
    replayer._reconcile = timed("reconcile", replayer._reconcile)  # type: ignore[method-assign]
    replayer.seek = timed("control", replayer.seek)  # type: ignore[method-assign]

    class Flushes(Instrument):
        def flushed(self, seconds: float, frames: int, nbytes: int) -> None:
            flushes.append((time.perf_counter(), seconds, nbytes))

    server.instrument(Flushes())
    loop = asyncio.get_running_loop()
    async with server.serve("127.0.0.1", 0) as (_, port):
        print(json.dumps({"port": port, "open": opened}), flush=True)
        replay.start()
        try:
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line.strip():
                    break
                seeks = []
                for i, end in enumerate(ends):
                    after = [f for f in flushes if f[0] >= end]
                    flush = after[0] if after else (math.nan, math.nan, 0)
                    seek = {name: values[i] for name, values in parts.items()}
                    seeks.append({**seek, "flush": flush[1], "flush_bytes": flush[2]})
                engine, net = server.engine.statistics(), server.net.statistics()
                counters = {
                    "rate_limited": net.rate_limited,
                    "behind": engine.behind,
                    "merged": engine.merged,
                    "catch_ups": engine.catch_ups,
                }
                print(json.dumps({"seeks": seeks, **counters}), flush=True)
        finally:
            await replay.stop()


async def seeks(
    path: Path, instants: int, checks: int, *, charge: bool = False, keyframes: int = 5
) -> dict[str, Any]:
    """Serve ``path`` from a replay server process; a provider (this process, core 1) seeks
    to ``instants`` random instants and to just before ``keyframes`` keyframes; ``checks``
    of them are compared with ``state_at``. ``charge``: see :func:`replay_role`."""
    from client_sync import ClientTypeRegistry, SyncProvider
    from pl3xus_rx.demo import Sensor
    from pl3xus_rx.exceptions import CommandTimeout, ConnectionLost
    from pl3xus_rx.protocol import REPLAY_REQUEST, ReplayControl, ReplayState
    from pl3xus_rx.recording import open_recording

    recording = open_recording(path)
    rng = random.Random(7)
    span = (recording.start, recording.end)
    plan = [("random", rng.uniform(*span)) for _ in range(instants)]
    keys = [recording.times[k] for k in recording.keyframes[1:]]
    plan += [("before a keyframe", t - 1e-3) for t in rng.sample(keys, min(len(keys), keyframes))]
    if keyframes:
        plan += [("start", span[0]), ("end", span[1])]
    rng.shuffle(plan)
    to_check = set(rng.sample(range(len(plan)), min(checks, len(plan))))
    fields = recording.header.types[recording.type_index(["Sensor"])["Sensor"]].fields
    sensor_index = recording.type_index(["Sensor"])["Sensor"]
    server = await spawn("--role", "replay", str(path), "charge" if charge else "-")
    pin(1)
    try:
        assert server.stdout is not None
        hello = json.loads(await asyncio.wait_for(server.stdout.readline(), 600))
        registry = (
            ClientTypeRegistry.builder()
            .register(Sensor)
            .register_request(ReplayControl, ReplayState, name=REPLAY_REQUEST)
            .build()
        )
        rows: list[dict[str, Any]] = []
        failed = None
        async with SyncProvider(f"ws://127.0.0.1:{hello['port']}", registry) as sync:
            sensors = sync.components(Sensor)
            sensors.subscribe(lambda _: None)  # (observed: subscribed)
            await sync.wait_synced(60)
            for n, (what, at) in enumerate(plan):
                began = time.perf_counter()
                try:
                    state = await sync.request(ReplayControl(action="seek", at=at), timeout=10)
                except (ConnectionLost, CommandTimeout) as exc:
                    failed = f"seek {n + 1}: {type(exc).__name__}"
                    print(f"  {failed}: {exc}", file=sys.stderr)
                    break
                took = time.perf_counter() - began
                assert state.position == at, (state.position, at)
                ok = None
                if n in to_check:
                    want, _ = recording.state_at(at)
                    expect = {
                        e: dict(zip(fields, values, strict=True))
                        for e, values in want.values[sensor_index].items()
                    }
                    ok = {int(e): v.model_dump() for e, v in sensors.get().items()} == expect
                rows.append({"what": what, "at": at - span[0], "seconds": took, "ok": ok})
                where = f"{at - span[0]:8.2f} s ({what})"
                print(f"  seek to {where}: {took * 1e3:.0f} ms, view {ok}", file=sys.stderr)
                await asyncio.sleep(PAUSE)
        got = await ask(server)
    finally:
        await finish(server)
    for row, parts in zip(rows, got["seeks"], strict=False):
        row.update(parts)
    counters = {key: value for key, value in got.items() if key != "seeks"}
    span_s = span[1] - span[0]
    return {
        "open": hello["open"],
        "rows": rows,
        "span": span_s,
        "failed": failed,
        "planned": len(plan),
        **counters,
    }


# ---------------------------------------------------------------- the table


def cpu_of(phase: dict[str, Any]) -> float:
    return float(phase["cpu"] / phase["wall"])


def table(
    sensors: int,
    updates: float,
    rounds: list[dict[str, Any]],
    seconds: float,
    hour: dict[str, Any],
    seek: dict[str, Any],
    charged: dict[str, Any],
) -> str:
    ms = 1000.0
    off = [cpu_of(r["off"]) for r in rounds]
    on = [cpu_of(r["on"]) for r in rounds]
    shares = [(b - a) / b for a, b in zip(off, on, strict=True)]
    hooks = [r["on"]["rec_hook"] / r["on"]["wall"] / cpu_of(r["on"]) for r in rounds]
    file_per = [r["on"]["rec_bytes"] / r["on"]["rec_items"] for r in rounds]
    wire_per = [r["on"]["frame_bytes"] / r["on"]["items_sent"] for r in rounds]
    ratios = [f / w for f, w in zip(file_per, wire_per, strict=True)]
    items_s = [r["on"]["rec_items"] / r["on"]["wall"] for r in rounds]
    sent_s = [r[v]["items_sent"] / r[v]["wall"] for r in rounds for v in ("off", "on")]
    split = [r["on"]["file"] for r in rounds]
    batch_per = [f["batch"] / f["batch_items"] for f in split]
    key_share = [f["keyframe"] / f["total"] for f in split]

    def fig(values: list[float], form: str, scale: float = 1.0) -> str:
        middle = format(statistics.median(values) * scale, form)
        low, high = (format(v * scale, form) for v in (min(values), max(values)))
        return f"{middle} ({low}..{high})"

    share_met = "met" if statistics.median(shares) <= 0.10 else "**missed**"
    ratio_met = "met" if statistics.median(ratios) <= 1.5 else "**missed**"
    n = len(rounds)
    lines = [
        f"**1-2. Recording the demo** (`--sensors {sensors:,}`, {updates:,.0f} readings/s, "
        f"{FLUSH_HZ:g} flushes/s at most; server on core 0, one bare WebSocket client "
        f"subscribed to every demo type on core 1). {n} round(s); each runs a fresh server "
        f"without and one with `record=`, in alternating order, and measures {seconds:g} s "
        "after the client's snapshots and a warm-up. Median (range) over the rounds.",
        "",
        "| measure | median (range) | goal |",
        "|---|---:|---|",
        f"| server CPU without the recorder (s per s) | {fig(off, '.3f')} | |",
        f"| server CPU with the recorder (s per s) | {fig(on, '.3f')} | |",
        f"| recording's share: (with - without) / with | **{fig(shares, '.1f', 100)} %** "
        f"| ≤ 10 %: {share_met} |",
        f"| cross-check: CPU inside the recorder's hook, share of the server's | "
        f"{fig(hooks, '.1f', 100)} % | |",
        f"| items recorded per s / sent to the client per s (both variants) | "
        f"{statistics.median(items_s):,.0f} / {statistics.median(sent_s):,.0f} | |",
        f"| file bytes per recorded item (keyframes included) | {fig(file_per, '.1f')} | |",
        f"| SYNC frame bytes per item sent | {fig(wire_per, '.1f')} | |",
        f"| file / wire | **{fig(ratios, '.2f')}x** | ≤ 1.5x: {ratio_met} |",
        f"| of the file: BATCH bytes per item; KEYFRAME share of the bytes | "
        f"{fig(batch_per, '.1f')}; {fig(key_share, '.0f', 100)} % | |",
    ]
    rows = seek["rows"]
    took = [r["seconds"] for r in rows]
    worst_kind = [r["seconds"] for r in rows if r["what"] == "before a keyframe"]
    checked = [r["ok"] for r in rows if r["ok"] is not None]
    seek_met = "met" if max(took) <= 0.2 else "**missed**"

    def part(name: str) -> str:
        values = [r[name] for r in rows if r[name] == r[name]]
        return f"{statistics.median(values) * ms:.0f} / {max(values) * ms:.0f}"

    rest = [r["seconds"] - r["control"] - r["flush"] for r in rows if r["flush"] == r["flush"]]
    lines += [
        "",
        f"**3. Seeking in a {seek['span'] / 3600:.2f}-hour recording** (synthetic, real "
        f"format: header and first keyframe by a `ServerRecorder` on a demo World of "
        f"{sensors:,} sensors, then {hour['flushes']:,} BATCH records of "
        f"{hour['items'] // hour['flushes']} random sensors' readings ({FLUSH_HZ:g}/s) and a "
        f"KEYFRAME every {KEYFRAME_SECONDS:g} s; {hour['bytes'] / 1e6:,.0f} MB, written in "
        f"{hour['seconds_to_write']:.0f} s). A replay server (core 0, paused) and a "
        "`client_sync` provider observing `components(Sensor)` (core 1); "
        f"{len(rows)} seeks: random instants, just before keyframes (1 ms before: the most "
        "batches to replay), the start and the end; timed from sending the `pl3xus.replay` "
        "seek to its reply (which follows the flush that carried the changes). ms; "
        "the file was in the page cache. The replay server runs with "
        "`NetworkSettings(rate_limit_frame_time=None)`: see the last row.",
        "",
        "| measure | value | goal |",
        "|---|---:|---|",
        f"| open (index) the file | {seek['open'] * ms:,.0f} ms | |",
        f"| seek: median / p90 / longest | **{statistics.median(took) * ms:.0f} / "
        f"{pct(took, 0.9) * ms:.0f} / {max(took) * ms:.0f} ms** | longest ≤ 200 ms: "
        f"{seek_met} |",
        f"| seek just before a keyframe: median / longest | "
        f"{statistics.median(worst_kind) * ms:.0f} / {max(worst_kind) * ms:.0f} ms | |",
        f"| of it, in the server: `state_at` (median / longest) | {part('state_at')} ms | |",
        f"| `Replayer._reconcile` | {part('reconcile')} ms | |",
        f"| the whole `control` call (both above) | {part('control')} ms | |",
        f"| the flush that carried the changes | {part('flush')} ms | |",
        f"| the rest: the wire and the client applying the frame | "
        f"{statistics.median(rest) * ms:.0f} / {max(rest) * ms:.0f} ms | |",
        f"| SYNC bytes of that flush (median) | "
        f"{statistics.median(r['flush_bytes'] for r in rows) / 1e3:,.0f} kB | |",
        f"| client's view = `state_at` (checked) | {sum(checked)}/{len(checked)} | |",
    ]
    matched = [r["ok"] for r in charged["rows"] if r["ok"] is not None]
    lines.append(
        f"| with the default `NetworkSettings` ({charged['planned']} random seeks, "
        f"{PAUSE:g} s apart): the client's frames dropped by the rate limiter; changes held "
        f"for it; its view = `state_at`; failed | {charged['rate_limited']}; "
        f"{charged['merged']:,}; **{sum(matched)}/{len(matched)}**; "
        f"{charged['failed'] or 'no'} | |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per phase")
    parser.add_argument("--hour", type=float, default=3600.0, help="the recording's seconds")
    parser.add_argument("--seeks", type=int, default=24, help="random instants")
    parser.add_argument("--folder", default=None, help="for the files (default: a temporary)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round")
    parser.add_argument("--no-docs", action="store_true", help="not into docs/performance.md")
    args = parser.parse_args()
    if args.role == "demo":
        sensors, updates, record = args.rest
        asyncio.run(demo_role(int(sensors), float(updates), record))
        return
    if args.role == "client":
        asyncio.run(client_role(int(args.rest[0]), args.rest[1:]))
        return
    if args.role == "replay":
        asyncio.run(replay_role(args.rest[0], args.rest[1] == "charge"))
        return
    from pl3xus_rx.demo import SENSOR_UPDATES

    updates = SENSOR_UPDATES
    warm = 2.0
    if args.quick:
        args.sensors, args.rounds, args.seconds, args.hour, args.seeks = 500, 1, 1.0, 60.0, 4
        updates, warm = 2_000.0, 0.5
    per_flush = round(updates / FLUSH_HZ)
    with tempfile.TemporaryDirectory(prefix="pl3xus-rec-", dir=args.folder) as name:
        folder = Path(name)
        rounds = asyncio.run(cost(args.sensors, updates, args.rounds, warm, args.seconds, folder))
        path = folder / "hour.pl3xrec"
        print(f"writing a {args.hour:g} s recording to {path}...", file=sys.stderr)
        hour = write_hour(path, args.sensors, args.hour, per_flush)
        print(
            f"  {hour['bytes'] / 1e9:.2f} GB in {hour['seconds_to_write']:.0f} s",
            file=sys.stderr,
        )
        seek = asyncio.run(seeks(path, args.seeks, 3 if args.quick else 6))
        # the same with the default rate limiter: a seek's server time charged to the client
        n = 3 if args.quick else 6
        charged = asyncio.run(seeks(path, n, n, charge=True, keyframes=0))
    text = table(args.sensors, updates, rounds, args.seconds, hour, seek, charged)
    command = "python bench/recording.py" + (" --quick" if args.quick else "")
    name = "recording_quick" if args.quick else "recording"
    publish(name, command, text, docs=not (args.no_docs or args.quick))


if __name__ == "__main__":
    main()
