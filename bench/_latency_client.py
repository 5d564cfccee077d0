"""Client process of bench/client_latency.py: N clients that time each update's arrival.

    python bench/_latency_client.py sync|raw URL N SECONDS

Each update carries the server's ``time.monotonic()`` (the same clock in every process on
one machine); latency = arrival (signal emission for sync, recv() for raw) minus that.
Prints "ready", then one JSON line with the latencies' percentiles in microseconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgpack
from pydantic import BaseModel


class Probe(BaseModel):
    seq: int
    t: float


def summary(samples: list[float]) -> dict[str, Any]:
    samples.sort()
    n = len(samples)
    return {
        "count": n,
        "p50_us": samples[n // 2] * 1e6 if n else None,
        "p99_us": samples[min(n - 1, int(n * 0.99))] * 1e6 if n else None,
        "mean_us": statistics.fmean(samples) * 1e6 if n else None,
    }


async def run_sync(url: str, n: int, seconds: float) -> list[float]:
    from client_sync import ClientTypeRegistry, SyncProvider

    registry = ClientTypeRegistry.builder().register(Probe).build()
    samples: list[float] = []
    recording = False

    def on_value(m: Any) -> None:
        if recording:
            now = time.monotonic()
            for value in m.values():
                samples.append(now - value.t)

    providers = []
    for _ in range(n):
        p = SyncProvider(url, registry)
        await p.__aenter__()
        p.components(Probe).subscribe(on_value)
        providers.append(p)
    print("ready", flush=True)
    await asyncio.sleep(0.3)  # warm up
    recording = True
    await asyncio.sleep(seconds)
    recording = False
    for p in providers:
        await p.close()
    return samples


async def run_raw(url: str, n: int, seconds: float) -> list[float]:
    from websockets.asyncio.client import connect

    samples: list[float] = []
    state = {"recording": False}

    async def reader(ws: Any) -> None:
        async for data in ws:
            if state["recording"]:
                samples.append(time.monotonic() - msgpack.unpackb(data)[1])

    conns = [await connect(url, compression=None) for _ in range(n)]
    tasks = [asyncio.create_task(reader(ws)) for ws in conns]
    print("ready", flush=True)
    await asyncio.sleep(0.3)
    state["recording"] = True
    await asyncio.sleep(seconds)
    state["recording"] = False
    for ws in conns:
        await ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    return samples


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    mode, url, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    run = run_sync if mode == "sync" else run_raw
    result = summary(asyncio.run(run(url, n, seconds)))
    print(json.dumps(result), flush=True)
