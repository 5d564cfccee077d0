"""History on the server: what the byte budget holds, what keeping costs per flush, and how
long a 600-second request takes over a real socket.

Phases (the store is fed with synthetic flush times: ten minutes take seconds, not ten
minutes):

1. *fit*: one numeric field of 1,000 entities at 2 Hz for 600 s, default budget (64 MiB):
   the bytes it counts, and whether anything was dropped for the budget.
2. *budget*: the same for 10,000 entities: how many seconds the budget holds, and what a
   600-second reply says (``kept_since``, ``cut_by_budget``).
3. *cost*: the store's CPU per flush of 10,000 updates (``changes`` + ``flushed``, what the
   engine's flush hook calls), and per point.
4. *reply*: a SyncServer on 127.0.0.1 holding phase 1's history; a client asks for 600 s of
   one entity's field (1,200 points) and of the whole type (1.2 M points, in parts): the
   time from the query sent to the last part received.

The table goes to bench/results/history.md and docs/performance.md (not with
``--no-docs``); with ``--quick``, sizes shrink and the table goes to bench/results only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import publish
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import SyncServer, SyncSettings
from pl3xus_rx.protocol import HISTORY_QUERY
from pl3xus_rx.world import UPSERTED


class Sensor(BaseModel):
    value: float
    ok: bool = True


def make(budget: int = 64 << 20) -> SyncServer:
    server = SyncServer(sync=SyncSettings(history_bytes=budget), devtools=False, metrics=False)
    server.sync_component_builder(Sensor).history(seconds=600, fields=["value"]).build()
    return server


def feed(server: SyncServer, entities: int, seconds: float, hz: float, end: float) -> None:
    """``seconds`` of flushes at ``hz`` with every entity changed, ending at ``end``."""
    world = server.world
    ids = [world.spawn(Sensor(value=i)) for i in range(entities)]
    reg = server.registry.get(Sensor)
    pending = dict.fromkeys(ids, UPSERTED)
    flushes = int(seconds * hz)
    for k in range(flushes):
        server.history.changes(reg, pending)
        server.history.flushed(end - (flushes - 1 - k) / hz)


def fit(entities: int, seconds: float) -> dict[str, Any]:
    server = make()
    end = time.time()
    started = time.perf_counter()
    feed(server, entities, seconds, 2.0, end)
    took = time.perf_counter() - started
    stats = server.history.statistics()
    return {"server": server, "stats": stats, "feed_s": took}


def reply_of(server: SyncServer, seconds: float) -> Any:
    from pl3xus_rx.protocol import HistoryQuery
    from pl3xus_rx.security import ANONYMOUS

    entity = next(iter(server.world.peek(Sensor)))
    return server.history.answer(
        HistoryQuery(type="Sensor", entity=entity, field="value", seconds=seconds), ANONYMOUS
    )


def cost(entities: int, flushes: int) -> dict[str, float]:
    server = make()
    world = server.world
    ids = [world.spawn(Sensor(value=0)) for _ in range(entities)]
    reg = server.registry.get(Sensor)
    pending = dict.fromkeys(ids, UPSERTED)
    times = []
    t0 = time.time()
    for k in range(flushes):
        for e in ids:  # (new values, as the application would write them)
            world.insert(e, Sensor(value=k + e))
        started = time.perf_counter()
        server.history.changes(reg, pending)
        server.history.flushed(t0 + k * 0.5)
        times.append(time.perf_counter() - started)
    best = min(times)
    return {
        "median_ms": statistics.median(times) * 1e3,
        "best_ms": best * 1e3,
        "ns_per_point": statistics.median(times) / entities * 1e9,
    }


async def over_socket(server: SyncServer, repeat: int) -> dict[str, float]:
    registry = ClientTypeRegistry.builder().register(Sensor).build()
    entity = next(iter(server.world.peek(Sensor)))
    out: dict[str, float] = {}
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", registry) as sync,
    ):
        one, points = [], 0
        for _ in range(repeat):
            started = time.perf_counter()
            got = await sync.fetch_history(Sensor, entity, "value", seconds=600, timeout=60)
            one.append(time.perf_counter() - started)
            points = len(got)
        out["one_ms"] = statistics.median(one) * 1e3
        out["one_points"] = points
        # the whole type, every part
        started = time.perf_counter()
        params: dict[str, Any] = {"type": "Sensor", "field": "value", "seconds": 600}
        parts = total = 0
        while True:
            body = await sync._command(_query(sync, params), 60)
            part = body["value"]
            parts += 1
            total += sum(len(row[1]) for row in part["series"])
            if part["cursor"] is None:
                break
            params = {**params, "cursor": part["cursor"]}
        out["all_ms"] = (time.perf_counter() - started) * 1e3
        out["all_points"] = total
        out["all_parts"] = parts
    return out


def _query(sync: SyncProvider, params: dict[str, Any]) -> Any:
    return lambda: sync._session.query(HISTORY_QUERY, params)


def table(small: dict[str, Any], big: dict[str, Any], per: dict[str, float], sock: Any) -> str:
    s1, s2 = small["stats"], big["stats"]
    part = reply_of(big["server"], 600)
    held = part.until - part.kept_since if part.kept_since is not None else 0.0
    mb = 1e6
    n1, n2 = small["entities"], big["entities"]
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| {n1:,} entities x 2 Hz x {small['seconds']:.0f} s: bytes counted "
        f"| {s1.bytes / mb:.1f} MB of {s1.budget / mb:.1f} MB "
        f"({s1.points:,} points, {s1.dropped_for_budget:,} dropped for the budget) |",
        f"| {n2:,} entities x 2 Hz x {big['seconds']:.0f} s: seconds the budget holds "
        f"| {held:.0f} s ({s2.dropped_for_budget:,} points dropped for the budget) |",
        f"| … a 600 s reply says | kept_since = until - {held:.0f} s, "
        f"cut_by_budget = {str(part.cut_by_budget).lower()} |",
        f"| keeping {per['entities']:,} updates per flush (CPU, median) "
        f"| {per['median_ms']:.2f} ms ({per['ns_per_point']:.0f} ns per point) |",
        f"| 600 s of one entity over a socket ({sock['one_points']:,} points) "
        f"| {sock['one_ms']:.1f} ms |",
        f"| 600 s of the whole type over a socket ({sock['all_points']:,} points, "
        f"{sock['all_parts']} parts) | {sock['all_ms']:.0f} ms |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the test suite)")
    parser.add_argument("--no-docs", action="store_true", help="not into docs/performance.md")
    args = parser.parse_args()
    n1, n2, secs = (100, 1_000, 60.0) if args.quick else (1_000, 10_000, 600.0)
    small = {**fit(n1, secs), "entities": n1, "seconds": secs}
    big = {**fit(n2, secs), "entities": n2, "seconds": secs}
    per = {**cost(n2, 5 if args.quick else 40), "entities": n2}
    sock = asyncio.run(over_socket(small["server"], 3 if args.quick else 20))
    text = table(small, big, per, sock)
    name = "history_quick" if args.quick else "history"
    publish(name, "python bench/history.py", text, docs=not (args.quick or args.no_docs))


if __name__ == "__main__":
    main()
