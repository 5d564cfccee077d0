"""Side by side at a fixed rate: raw ``websockets``, pl3xus_rx and python-socketio.

The same job for every server: 10,000 entities, every tick 1,000 random ``Position(x, y)``
updates that start as raw ``(entity, x, y)`` tuples, every client receives every update.
Ticks run at a fixed rate (10 Hz; 2 Hz at 1,000 clients), so what is compared is the server
CPU each tick costs, not how fast a saturated server goes. The paths:

- **raw**: ``websockets`` ``serve()`` (compression off), the tick's ``[entity, [x, y]]`` items
  packed once with msgpack, ``broadcast()`` to every connection: the floor;
- **pl3xus fast**: a ``SyncServer`` (``max_update_rate_hz=1000``) syncing ``Position``, the tick
  is ``world.update_many(Position, rows)`` (validated, no model instance); the flush that
  follows sends one SYNC frame per client;
- **pl3xus model**: the same server, the tick is ``world.insert(e, Position(x=x, y=y))`` per
  update;
- **socketio**: python-socketio's ``AsyncServer`` on aiohttp with its msgpack serializer
  (``serializer="msgpack"``), every client in one room, the tick is one
  ``await sio.emit("positions", items, room="all")`` of the same ``[entity, [x, y]]`` items
  (the packet is encoded once per emit; each client gets it through its own queue and
  writer task, as python-socketio does).

Each run is a fresh server process pinned to core 0 (``os.sched_setaffinity``), whose C
clients run in another process pinned to core 1 (``bench/_tick_client.py``: bare WebSocket
clients that count frames, so the client side costs the same for every server). After a few
warm-up ticks the server's CPU (``time.process_time``: user + system, this process only) is
taken from the first timed tick until every client has had every frame. Runs are
interleaved: every path once per round, in a rotating order; the ratios are taken within a
round and their median over the rounds is reported. Also reported: bytes on the wire per
update and the time from a tick's start until the last client has its frame.

Usage::

    python bench/socketio_side_by_side.py              # C = 10, 100 at 10 Hz (5 rounds) and
                                                       # 1,000 at 2 Hz (3 rounds); writes docs
    python bench/socketio_side_by_side.py --clients 10 --repeat 1 --no-docs
    python bench/socketio_side_by_side.py --quick --no-docs      # tests/test_bench.py
    python bench/socketio_side_by_side.py --profile fast --clients 10 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import publish  # noqa: E402
from net_fanout import pin  # noqa: E402

ENTITIES = 10_000
PER_TICK = 1_000
WARMUP = 5
PATHS = {  # name: what the table calls it
    "raw": "raw `websockets` `broadcast()`",
    "fast": "pl3xus_rx fast path (`update_many`)",
    "model": "pl3xus_rx model path (`insert`)",
    "sio": "python-socketio, msgpack (aiohttp)",
    "sio_asgi": "python-socketio, msgpack (ASGI on uvicorn)",
}

Rows = list[tuple[int, float, float]]
Tick = Callable[[Rows], Awaitable[None]]


# --------------------------------------------------------------------------- server side


def plan(ticks: int) -> list[Rows]:
    """Per tick, 1,000 ``(entity, x, y)``; entity ids as a fresh World gives them (1..N)."""
    rng = random.Random(7)
    return [
        [
            (i, round(rng.uniform(-100, 100), 3), round(rng.uniform(-100, 100), 3))
            for i in rng.sample(range(1, ENTITIES + 1), PER_TICK)
        ]
        for _ in range(ticks)
    ]


async def spawn_clients(port: int, n: int, protocol: str, expected: int, hz: float) -> Any:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("_tick_client.py")),
        str(port),
        str(n),
        protocol,
        str(expected),
        str(expected / hz + 60),  # (seconds until the clients give up)
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 24,  # the "done" line carries a time per tick
    )
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    assert line.strip() == b"ready", line
    return proc


async def drive(
    tick: Tick, batches: list[Rows], hz: float, proc: Any, ready: Callable[[], bool]
) -> dict[str, Any]:
    """Run the ticks at ``hz`` once ``ready()``; wait until every client has every frame."""
    for _ in range(3000):
        if ready():
            break
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("the clients did not all subscribe within 30 s")
    await asyncio.sleep(0.2)  # (the last snapshots, acks and room joins settle)
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    starts: list[float] = []
    late = 0
    cpu0 = 0.0
    for k, batch in enumerate(batches):
        delay = t0 + k / hz - loop.time()
        if delay <= 0 and k > WARMUP:
            late += 1
        # (always yield: a late tick still lets the last one's flush run first, so that
        # every tick is its own frame on every path)
        await asyncio.sleep(max(0.0, delay))
        if k == WARMUP:
            cpu0 = time.process_time()
        starts.append(time.perf_counter())
        await tick(batch)
    line = (await asyncio.wait_for(proc.stdout.readline(), len(batches) / hz + 90)).decode()
    cpu = time.process_time() - cpu0
    proc.stdin.write(b"\n")
    await proc.stdin.drain()
    await asyncio.wait_for(proc.wait(), 60)
    if not line.startswith("done "):
        raise RuntimeError(f"the clients did not get every frame: {line.strip()}")
    got = json.loads(line[5:])
    latency = [done - start for start, done in zip(starts, got["complete"], strict=True)]
    return {
        "cpu": cpu,
        "ticks": len(batches) - WARMUP,
        "late": late,
        "bytes": got["bytes"],
        "latency": latency[WARMUP:],
    }


async def serve_raw(clients: int, batches: list[Rows], hz: float) -> dict[str, Any]:
    import msgpack
    from websockets.asyncio.server import broadcast, serve

    conns: set[Any] = set()

    async def handler(ws: Any) -> None:
        conns.add(ws)
        await ws.wait_closed()
        conns.discard(ws)

    pack = msgpack.Packer().pack

    async def tick(rows: Rows) -> None:
        broadcast(conns, pack([[i, [x, y]] for i, x, y in rows]))

    async with serve(
        handler, "127.0.0.1", 0, compression=None, ping_interval=None, backlog=1024
    ) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        proc = await spawn_clients(port, clients, "raw", len(batches), hz)
        return await drive(tick, batches, hz, proc, lambda: len(conns) >= clients)


async def serve_pl3xus(clients: int, batches: list[Rows], hz: float, path: str) -> dict[str, Any]:
    from pydantic import BaseModel

    from pl3xus_rx import NetworkSettings, SyncServer, SyncSettings

    class Position(BaseModel):
        x: float
        y: float

    server = SyncServer(
        NetworkSettings(
            ping_interval=None,
            max_connections=None,
            channel_capacity=1000,
            rate_limit_per_second=None,
        ),
        SyncSettings(max_update_rate_hz=1000),  # (a late tick is never merged into the next)
    )
    server.sync_component(Position)
    world = server.world
    ents = [world.spawn(Position(x=0, y=0)) for _ in range(ENTITIES)]
    assert ents == list(range(1, ENTITIES + 1)), "the plan's entity ids are the World's"
    insert, update_many = world.insert, world.update_many

    async def fast(rows: Rows) -> None:
        update_many(Position, rows)

    async def model(rows: Rows) -> None:
        for e, x, y in rows:
            insert(e, Position(x=x, y=y))  # type: ignore[arg-type]

    def ready() -> bool:
        stats = server.engine.statistics()
        return stats.subscriptions >= clients and stats.frames >= clients  # snapshots out

    async with server.serve("127.0.0.1", 0) as (_, port):
        proc = await spawn_clients(port, clients, "pl3xus", len(batches), hz)
        return await drive(fast if path == "fast" else model, batches, hz, proc, ready)


async def serve_sio(clients: int, batches: list[Rows], hz: float) -> dict[str, Any]:
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        serializer="msgpack",
        ping_interval=3600,  # (no pings in the window, as for the other servers)
        ping_timeout=3600,
        logger=False,
        engineio_logger=False,
    )
    joined = [0]

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        await sio.enter_room(sid, "all")
        joined[0] += 1

    async def tick(rows: Rows) -> None:
        await sio.emit("positions", [[i, [x, y]] for i, x, y in rows], room="all")

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    try:
        port = runner.addresses[0][1]
        proc = await spawn_clients(port, clients, "sio", len(batches), hz)
        return await drive(tick, batches, hz, proc, lambda: joined[0] >= clients)
    finally:
        await runner.cleanup()


async def serve_sio_asgi(clients: int, batches: list[Rows], hz: float) -> dict[str, Any]:
    import socketio
    import uvicorn

    sio = socketio.AsyncServer(
        async_mode="asgi",
        serializer="msgpack",
        ping_interval=3600,
        ping_timeout=3600,
        logger=False,
        engineio_logger=False,
    )
    joined = [0]

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        await sio.enter_room(sid, "all")
        joined[0] += 1

    async def tick(rows: Rows) -> None:
        await sio.emit("positions", [[i, [x, y]] for i, x, y in rows], room="all")

    config = uvicorn.Config(
        socketio.ASGIApp(sio),
        host="127.0.0.1",
        port=0,
        loop="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws_ping_interval=None,
        ws_per_message_deflate=False,
        backlog=1024,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        port = server.servers[0].sockets[0].getsockname()[1]
        proc = await spawn_clients(port, clients, "sio", len(batches), hz)
        return await drive(tick, batches, hz, proc, lambda: joined[0] >= clients)
    finally:
        server.should_exit = True
        await task


def profile(path: str, clients: int, hz: float, seconds: float) -> None:
    """One run sampled by ``bench/flush_profile.py``'s ``ITIMER_PROF`` sampler: print its
    rows in ms per tick. The rate is made 2.7 % slower so that the samples (the kernel's
    4 ms tick) do not lock onto one phase of a 100 ms or 500 ms tick."""
    import flush_profile

    global drive
    pin(0)
    hz *= 0.973
    sampler = flush_profile.Sampler()
    plain = drive

    async def sampled(
        tick: Tick, batches: list[Rows], hz: float, proc: Any, ready: Callable[[], bool]
    ) -> dict[str, Any]:
        seen = [0]

        async def counted(rows: Rows) -> None:
            seen[0] += 1
            if seen[0] == WARMUP + 1:
                sampler.start()
            await tick(rows)

        result = await plain(counted, batches, hz, proc, ready)
        result["rows"] = sampler.stop()
        return result

    drive = sampled
    batches = plan(WARMUP + max(5, round(seconds * hz)))
    if path == "raw":
        result = asyncio.run(serve_raw(clients, batches, hz))
    elif path == "sio":
        result = asyncio.run(serve_sio(clients, batches, hz))
    elif path == "sio_asgi":
        result = asyncio.run(serve_sio_asgi(clients, batches, hz))
    else:
        result = asyncio.run(serve_pl3xus(clients, batches, hz, path))
    ticks = result["ticks"]
    print(
        f"{PATHS[path]}, C = {clients}, {hz:.2f} Hz: {result['cpu'] / ticks * 1e3:.2f} ms of "
        f"CPU a tick, {sampler.samples} samples (the rows are flush_profile.py's)"
    )
    for row, spent in sorted(result["rows"].items(), key=lambda kv: -kv[1]):
        print(f"  {row:<40} {spent / ticks * 1e3:8.3f} ms/tick")


def serve(path: str, clients: int, hz: float, ticks: int) -> None:
    """One run, in this process (pinned to core 0): print its result as a JSON line."""
    pin(0)
    batches = plan(WARMUP + ticks)
    if path == "raw":
        result = asyncio.run(serve_raw(clients, batches, hz))
    elif path == "sio":
        result = asyncio.run(serve_sio(clients, batches, hz))
    elif path == "sio_asgi":
        result = asyncio.run(serve_sio_asgi(clients, batches, hz))
    else:
        result = asyncio.run(serve_pl3xus(clients, batches, hz, path))
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------- orchestration


@dataclass
class Run:
    path: str
    clients: int
    hz: float
    cpu: float
    ticks: int
    late: int
    bytes: int
    latency: list[float]

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.ticks * 1e3

    @property
    def bytes_per_update(self) -> float:
        return self.bytes / ((self.ticks + WARMUP) * PER_TICK * self.clients)


def run_one(path: str, clients: int, hz: float, ticks: int) -> Run:
    out = subprocess.run(
        [sys.executable, __file__, "--serve", path, str(clients), str(hz), str(ticks)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{path} at C = {clients} failed:\n{out.stderr[-3000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return Run(
        path, clients, hz, got["cpu"], got["ticks"], got["late"], got["bytes"], got["latency"]
    )


SIO = ("sio", "sio_asgi")


def ratio(rounds: list[dict[str, Run]], path: str, over: str) -> list[float]:
    """``path``'s CPU over ``over``'s, per round; ``over="sio"``: over the cheaper of the
    python-socketio servers run in that round."""
    out = []
    for rnd in rounds:
        refs = [rnd[p].cpu for p in (SIO if over == "sio" else (over,)) if p in rnd]
        if path in rnd and refs:
            out.append(rnd[path].cpu / min(refs))
    return out


def span(values: list[float]) -> str:
    if not values:
        return ""
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}x"
    return f"**{med:.2f}x** ({min(values):.2f} to {max(values):.2f})"


def table(results: dict[tuple[int, float], list[dict[str, Run]]], paths: list[str]) -> str:
    lines = [
        f"{ENTITIES:,} entities, {PER_TICK:,} random `Position(x, y)` updates per tick from raw "
        "`(entity, x, y)` tuples, every client receives every update; server on core 0, "
        "clients in another process on core 1. Server CPU per tick: median over the rounds; "
        "the ratios are taken within a round, then their median (lowest to highest round in "
        "brackets); *CPU / socketio* is against the cheaper of python-socketio's two servers "
        "in the same round. Latency: from a tick's start until the last client has its "
        "frame, median and highest over the ticks of the run of median CPU.",
        "",
        "| C clients | tick rate | rounds | path | server CPU ms/tick | CPU / raw | CPU / socketio "
        "| bytes/update | latency to the last client, ms (median / max) | late ticks |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (c, hz), rounds in results.items():
        for path in paths:
            runs = sorted((rnd[path] for rnd in rounds if path in rnd), key=lambda r: r.cpu)
            if not runs:
                continue
            mid = runs[len(runs) // 2]
            cpu = statistics.median(r.cpu_ms for r in runs)
            x_raw = "" if path == "raw" else span(ratio(rounds, path, "raw"))
            x_sio = "" if path in SIO else span(ratio(rounds, path, "sio"))
            lat = sorted(mid.latency)
            lines.append(
                f"| {c:,} | {hz:g} Hz | {len(runs)} | {PATHS[path]} | {cpu:.2f} | {x_raw} "
                f"| {x_sio} | {mid.bytes_per_update:.1f} | {statistics.median(lat) * 1e3:.1f} / "
                f"{lat[-1] * 1e3:.1f} | {sum(r.late for r in runs)} |"
            )
    return "\n".join(lines)


def main(
    configs: list[tuple[int, float, int, int]], paths: list[str]
) -> dict[tuple[int, float], list[dict[str, Run]]]:
    """``configs``: (clients, hz, ticks, rounds) each."""
    pin(0)
    out: dict[tuple[int, float], list[dict[str, Run]]] = {}
    for clients, hz, ticks, rounds in configs:
        out[(clients, hz)] = []
        for k in range(rounds):
            order = paths[k % len(paths) :] + paths[: k % len(paths)]
            got = {path: run_one(path, clients, hz, ticks) for path in order}
            out[(clients, hz)].append(got)
            base = got.get("raw")
            print(
                f"C={clients:<5} {hz:g} Hz round {k + 1}: "
                + "  ".join(
                    f"{p} {got[p].cpu_ms:.2f} ms"
                    + (f" ({got[p].cpu / base.cpu:.2f}x)" if base and p != "raw" else "")
                    for p in paths
                ),
                flush=True,
            )
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description="Side by side at a fixed rate (see docstring).")
    parser.add_argument("--clients", default="10,100,1000")
    parser.add_argument("--hz", type=float, default=10.0, help="tick rate below 1,000 clients")
    parser.add_argument("--hz-big", type=float, default=2.0, help="tick rate at ≥ 1,000 clients")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed ticks' span per run")
    parser.add_argument("--repeat", type=int, default=5, help="rounds below 1,000 clients")
    parser.add_argument("--repeat-big", type=int, default=3, help="rounds at ≥ 1,000 clients")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--quick", action="store_true", help="2 clients, 5 ticks, 1 round")
    parser.add_argument("--profile", metavar="PATH", help="profile one run of PATH instead")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    if args.profile:
        c = int(args.clients.split(",")[0])
        profile(args.profile, c, args.hz_big if c >= 1000 else args.hz, args.seconds)
        sys.exit(0)
    chosen = [p for p in PATHS if p in args.paths.split(",")]
    missing = [m for m in ("socketio", "aiohttp", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"not installed: {', '.join(missing)}; the python-socketio rows are left out")
        chosen = [p for p in chosen if p not in SIO]
    if args.quick:
        configs = [(2, args.hz, 5, 1)]
    else:
        configs = []
        for c in (int(x) for x in args.clients.split(",")):
            big = c >= 1000
            hz = args.hz_big if big else args.hz
            ticks = max(5, round(args.seconds * hz * (2 if big else 1)))
            configs.append((c, hz, ticks, args.repeat_big if big else args.repeat))
    res = main(configs, chosen)
    name = "socketio_side_by_side" + ("_quick" if args.quick else "")
    command = "python bench/socketio_side_by_side.py" + (
        " --quick" if args.quick else " ".join(["", *sys.argv[1:]]).replace(" --no-docs", "")
    )
    publish(name, command, table(res, chosen), docs=not (args.no_docs or args.quick))
