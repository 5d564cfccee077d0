"""What ``/metrics`` (an instrument) costs a flush: the server's own flush (``SyncServer``'s
shell around the engine) of 1,000 changed entities to C subscribed clients, with metrics on
(the default) and off, interleaved in one process.

The clients are the sync engine's only (the network knows none of them, so the frames are
built, counted and dropped where a socket would take them): what is measured is the flush
and what the instrument adds to it (timing it, counting its frames and bytes, one histogram
observation). Every round checks that the flush built C frames.

    python bench/instrument_cost.py            # 30 rounds, C = 10 and 100
    python bench/instrument_cost.py --rounds 3 --clients 2 --no-docs   # quick

The table goes to bench/results/instrument_cost.md and docs/performance.md (not with
``--no-docs``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from typing import Any

from _report import publish
from pydantic import BaseModel

from pl3xus_rx import NetworkSettings, SyncServer, SyncSettings
from pl3xus_rx.protocol import FrameKind

ENTITIES = 1_000


class Position(BaseModel):
    x: float
    y: float


def make(clients: int, metrics: bool) -> tuple[SyncServer, list[Any], list[int]]:
    server = SyncServer(
        NetworkSettings(ping_interval=None),
        SyncSettings(max_update_rate_hz=1_000_000),
        metrics=metrics,
        devtools=False,
    )
    server.sync_component(Position)
    entities = [server.world.spawn(Position(x=0, y=0)) for _ in range(ENTITIES)]
    built = [0]
    engine_flush_into = server.engine.flush_into

    def counting(now: float, send: Any, *stamp: Any, **options: Any) -> None:
        def counted(connection: int, data: Any) -> None:
            built[0] += 1
            send(connection, data)

        engine_flush_into(now, counted, *stamp, **options)

    server.engine.flush_into = counting  # type: ignore[method-assign]
    for conn in range(1, clients + 1):
        server.engine.add_client(conn)
        server.engine.handle_frame(conn, True, [FrameKind.SUBSCRIBE, 1, "Position", None, {}])
    server.engine.flush(time.monotonic())  # the snapshots
    return server, entities, built


def one_flush(server: SyncServer, entities: list[Any], built: list[int], step: int) -> float:
    for entity in entities:
        server.world.insert(entity, Position(x=step + 1, y=step))
    built[0] = 0
    gc.collect()
    gc.disable()
    try:
        started = time.process_time()
        server._flush()
        seconds = time.process_time() - started
    finally:
        gc.enable()
    return seconds


async def run(clients: list[int], rounds: int) -> list[list[str]]:
    rows = []
    for c in clients:
        servers = {flag: make(c, flag) for flag in (False, True)}
        times: dict[bool, list[float]] = {False: [], True: []}
        for step in range(rounds + 3):
            for flag in (False, True) if step % 2 else (True, False):
                server, entities, built = servers[flag]
                seconds = one_flush(server, entities, built, step)
                assert built[0] == c, f"{built[0]} frames for {c} clients"
                if step >= 3:
                    times[flag].append(seconds)
            await asyncio.sleep(0)
        off, on = statistics.median(times[False]), statistics.median(times[True])
        assert servers[True][0].metrics is not None and servers[False][0].metrics is None
        rows.append(
            [
                f"{c}",
                f"{off * 1e3:.3f}",
                f"{on * 1e3:.3f}",
                f"{on / off:.3f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--clients", default="10,100")
    parser.add_argument("--no-docs", action="store_true", help="not into docs/performance.md")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    rows = asyncio.run(run(clients, args.rounds))
    header = "| C clients | flush CPU, metrics off (ms) | metrics on (ms) | on / off |"
    lines = [
        f"{args.rounds} interleaved flushes of {ENTITIES:,} changed entities per setting "
        "(medians of CPU time; the goal: on / off <= 1.03).",
        "",
        header,
        "|---:|---:|---:|---:|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    command = f"python bench/instrument_cost.py --rounds {args.rounds} --clients {args.clients}"
    publish("instrument_cost", command, "\n".join(lines), docs=not args.no_docs)


if __name__ == "__main__":
    main()
