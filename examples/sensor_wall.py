"""A wall of 1,000 sensors changing at 50 Hz each, and what conflation and rate limits do.

    python examples/sensor_wall.py --seconds 3

One process runs a SyncServer (flushes capped at 10 Hz) and three clients over real
WebSockets: one subscribes plainly, one with its own 2 Hz cap, one with a deadband. It prints
how many values the server changed and how many each client received: the server sends at
most the latest value per sensor per flush, never a backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Mapping

from pydantic import BaseModel

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import SyncServer, SyncSettings


class Reading(BaseModel):
    value: float


async def main(sensors: int, hz: float, seconds: float) -> dict[str, int]:
    server = SyncServer(sync=SyncSettings(max_update_rate_hz=10))
    server.sync_component(Reading)
    ids = [server.world.spawn(Reading(value=0.0)) for _ in range(sensors)]
    registry = ClientTypeRegistry.builder().register(Reading).build()
    counts = {"changed": 0, "plain": 0, "capped_2hz": 0, "deadband_1.0": 0}
    async with server.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        async with (
            SyncProvider(url, registry) as a,
            SyncProvider(url, registry) as b,
            SyncProvider(url, registry) as c,
        ):
            clients: tuple[tuple[str, SyncProvider, dict[str, float]], ...] = (
                ("plain", a, {}),
                ("capped_2hz", b, {"max_rate_hz": 2.0}),
                ("deadband_1.0", c, {"deadband": 1.0}),
            )
            for name, sync, options in clients:
                last: dict[int, Reading] = {}

                def diff(
                    mapping: Mapping[int, Reading],
                    name: str = name,
                    last: dict[int, Reading] = last,
                ) -> None:
                    # count the values that changed since this client's previous batch
                    for entity, value in mapping.items():
                        if last.get(entity) != value:
                            counts[name] += 1
                            last[entity] = value

                sync.components(Reading, **options).subscribe(diff)
            rng = random.Random(1)
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            tick = 1.0 / hz
            while loop.time() < end:
                for entity in ids:
                    current = server.world.get(entity, Reading)
                    assert current is not None
                    server.world.insert(
                        entity, Reading(value=round(current.value + rng.uniform(-0.5, 0.5), 3))
                    )
                    counts["changed"] += 1
                await asyncio.sleep(tick)
            await asyncio.sleep(0.6)  # let the last flushes arrive
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--hz", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=3)
    args = parser.parse_args()
    result = asyncio.run(main(args.sensors, args.hz, args.seconds))
    print(f"server changed {result['changed']:,} values")
    for name in ("plain", "capped_2hz", "deadband_1.0"):
        share = result[name] / max(1, result["changed"])
        print(f"  {name:13} client received {result[name]:>9,} updates ({share:.1%})")
