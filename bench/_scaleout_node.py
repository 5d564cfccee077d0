"""One process of the scale-out benchmark (bench/scaleout.py).

    python bench/_scaleout_node.py authority NATS_URL CLUSTER RATE
    python bench/_scaleout_node.py gateway NATS_URL CLUSTER
    python bench/_scaleout_node.py single RATE

Prints ``port N`` once serving, then answers lines on stdin: ``go`` starts the changes (an
authority or a single server: RATE changes/s over 1,000 entities, each value stamped with
``time.monotonic()``), ``stats`` prints a JSON line (CPU seconds, flushes, bytes and frames
sent), ``quit`` exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel

from pl3xus_rx import SyncServer, SyncSettings

ENTITIES = 1000


class Probe(BaseModel):
    seq: int
    t: float


def setup(server: SyncServer) -> None:
    server.sync_component(Probe)


async def produce(server: SyncServer, rate: float) -> None:
    world = server.world
    ids = [e for e, _ in world.query(Probe)]
    per_tick = max(1, round(rate / 100))
    seq = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    tick = 0
    while True:
        tick += 1
        now = time.monotonic()
        for _ in range(per_tick):
            seq += 1
            world.insert(ids[seq % len(ids)], Probe(seq=seq, t=now))
        await asyncio.sleep(max(0.0, start + tick * 0.01 - loop.time()))


async def main(role: str, args: list[str]) -> None:
    # A gateway relays batches that come at the authority's pace: its own cap is higher so
    # that it never adds a wait of its own (docs/scaling.md).
    hz = 120 if role == "gateway" else 30
    server = SyncServer(sync=SyncSettings(max_update_rate_hz=hz), devtools=False, metrics=False)
    setup(server)
    rate = 0.0
    node = None
    if role in ("authority", "single"):
        for _ in range(ENTITIES):
            server.world.spawn(Probe(seq=0, t=0.0))
        rate = float(args[-1])
    async with server.serve("127.0.0.1", 0) as (_, port):
        if role == "authority":
            from pl3xus_rx.scaleout import Authority

            node = Authority(server, args[0], args[1])
            await node.start()
        elif role == "gateway":
            from pl3xus_rx.scaleout import Gateway

            node = Gateway(server, args[0], args[1], gateway=int(args[2]))
            await node.start()
        print(f"port {port}", flush=True)
        loop = asyncio.get_running_loop()
        producer = None
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "go" and producer is None and rate:
                producer = asyncio.create_task(produce(server, rate))
            elif line == "stats":
                net = server.net.statistics()
                print(
                    json.dumps(
                        {
                            "cpu": time.process_time(),
                            "flushes": server.engine.statistics().flushes,
                            "bytes": net.bytes_sent,
                            "frames": net.frames_sent,
                            "seq": getattr(node, "seq", 0),
                        }
                    ),
                    flush=True,
                )
            elif line in ("quit", ""):
                break
        if producer is not None:
            producer.cancel()
        if node is not None:
            await node.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
