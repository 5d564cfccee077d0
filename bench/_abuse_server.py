"""The server of ``bench/abuse.py``, in its own process (pinned to core 0), at default settings.

A cell of 10,000 entities: 2,000 sensors updating (100 every 10 ms) and 8,000 static
children, a writable ``Label``, a request whose handler never returns, DevTools (and its
``pl3xus.tree`` query) on. ``GET /bench/stats`` answers the RSS (now and peak since the last
``?reset=1``) and how many log records carried a traceback or were errors. Prints the port,
then runs until its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sys
import threading
import time
from pathlib import Path

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pl3xus_rx import Authorized, SyncServer
from pl3xus_rx.net import HttpRequest, HttpResponse

SENSORS = 2_000
STATIC = 8_000
PER_TICK = 100
TICK = 0.01


class Sensor(BaseModel):
    value: float
    unit: str


class Label(BaseModel):
    text: str


class Hang(BaseModel):
    n: int


class Ack(BaseModel):
    ok: bool


class Counting(logging.Handler):
    """Counts log records with a traceback, and errors."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.tracebacks = 0
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None:
            self.tracebacks += 1
        if record.levelno >= logging.ERROR:
            self.errors += 1


class Memory:
    """Samples this process's RSS every 10 ms, keeping the peak since the last reset."""

    def __init__(self) -> None:
        self.peak = 0
        self.page = os.sysconf("SC_PAGE_SIZE")
        threading.Thread(target=self._run, daemon=True).start()

    def now(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.now())
            time.sleep(0.01)


async def main() -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    counting = Counting()
    logging.getLogger().addHandler(counting)
    logging.getLogger().setLevel(logging.WARNING)
    memory = Memory()
    server = SyncServer()
    server.sync_component(Sensor)
    server.sync_component_builder(Label).with_entity_policy(
        lambda world, ctx, entity: Authorized()
    ).build()

    async def hang(world: object, ctx: object, request: Hang) -> Ack:
        await asyncio.Event().wait()
        return Ack(ok=True)

    server.request(Hang).register(hang)
    world = server.world
    cell = world.spawn(Label(text="cell"))
    sensors = [world.spawn(Sensor(value=0.0, unit="C"), parent=cell) for _ in range(SENSORS)]
    for i in range(STATIC):
        world.spawn(Label(text=f"part {i}"), parent=cell)

    async def stats(request: HttpRequest) -> HttpResponse:
        body = {
            "rss_mb": memory.now() / 2**20,
            "peak_mb": memory.peak / 2**20,
            "tracebacks": counting.tracebacks,
            "errors": counting.errors,
            "cell": int(cell),
            "sensor": int(sensors[0]),
            "connections": len(server.net.connections),
            **{
                k: getattr(server.net.statistics(), k)
                for k in ("channel_full_closes", "rate_limited", "bad_frames")
            },
        }
        if request.query.get("reset"):
            memory.peak = memory.now()
        return HttpResponse(200, json.dumps(body), "application/json")

    server.net.add_route("/bench/stats", stats)
    rng = random.Random(3)
    async with server.serve("127.0.0.1", 0) as (_, port):
        print(port, flush=True)
        done = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        step = 0
        while not done.done():
            step += 1
            for entity in rng.sample(sensors, PER_TICK):
                world.insert(entity, Sensor(value=round(rng.uniform(0, 100), 2), unit="C"))
            await asyncio.sleep(TICK)


if __name__ == "__main__":
    asyncio.run(main())
