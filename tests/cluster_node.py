"""One node of a test cluster, as its own process (so a test can SIGSTOP it):

    python cluster_node.py authority NATS_URL [--schema-v2] [--first SPEED]
    python cluster_node.py gateway NATS_URL GATEWAY_ID [--schema-v2] [--port PORT]

It prints ``PORT <n>`` once serving, then serves until SIGTERM (a gateway drains) or
SIGINT. The app: robots with a Speed anyone signed in may change and a Boost request that
adds to it (each Boost handled is counted in the World: ``Boosts.n``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from pydantic import BaseModel

from pl3xus_rx import Identity, SyncServer, SyncSettings, bearer_tokens
from pl3xus_rx.scaleout import Authority, Gateway
from pl3xus_rx.scaleout._lease import LeaseHeld, LeaseUnavailable


class Speed(BaseModel):
    value: float


class SpeedV2(BaseModel):
    """What a newer release calls Speed: a field more."""

    value: float
    unit: str


class Boosts(BaseModel):
    n: int


class Boost(BaseModel):
    by: float


class Boosted(BaseModel):
    value: float


TOKENS = {
    "nora-token": Identity.of("nora", "operator"),
    "sam-token": Identity.of("sam", "operator"),
}


def setup(server: SyncServer, newer: bool = False) -> None:
    server.authenticate(bearer_tokens(TOKENS))
    model: Any = Speed
    if newer:
        SpeedV2.__name__ = "Speed"  # (the same name, another shape)
        model = SpeedV2
    server.sync_component_builder(model).with_default_entity_policy().build()
    server.sync_component(Boosts)

    def boost(world: Any, ctx: Any, entity: Any, request: Boost) -> Boosted:
        speed = world.get(entity, model)
        world.insert(entity, speed.model_copy(update={"value": speed.value + request.by}))
        for counter, boosts in world.query(Boosts):
            world.insert(counter, Boosts(n=boosts.n + 1))
        return Boosted(value=world.get(entity, model).value)

    server.request(Boost).targeted().with_default_entity_policy().register(boost)


async def main(argv: list[str]) -> None:
    role, url = argv[0], argv[1]
    newer = "--schema-v2" in argv
    server = SyncServer(sync=SyncSettings(max_update_rate_hz=50))
    setup(server, newer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if role == "authority":
        world = server.world
        world.spawn(Boosts(n=0))
        first = float(argv[argv.index("--first") + 1]) if "--first" in argv else 0.0
        for i in range(3):
            world.spawn(Speed(value=first + i))
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        ttl = float(os.environ.get("PL3XUS_LEASE_TTL", "12"))
        authority = Authority(server, url, "t", lease_ttl=ttl)
        async with server.serve("127.0.0.1", 0) as (_host, port):
            try:
                await authority.start()
            except (LeaseHeld, LeaseUnavailable, ConnectionError) as exc:
                print(f"refused: {exc}", file=sys.stderr, flush=True)
                raise SystemExit(1) from None
            print(f"PORT {port}", flush=True)
            fenced = asyncio.ensure_future(authority.fenced.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait([fenced, stopped], return_when=asyncio.FIRST_COMPLETED)
            fenced.cancel()
            stopped.cancel()
            await authority.stop()
            if authority.fenced.is_set():
                print(f"fenced: {authority.fenced_reason}", file=sys.stderr, flush=True)
                raise SystemExit(1)
        return
    gateway = Gateway(server, url, "t", gateway=int(argv[2]))
    draining = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, draining.set)
    at = int(argv[argv.index("--port") + 1]) if "--port" in argv else 0
    async with server.serve("127.0.0.1", at) as (_host, port):
        await gateway.start()
        print(f"PORT {port}", flush=True)
        done = asyncio.ensure_future(stop.wait())
        drain = asyncio.ensure_future(draining.wait())
        await asyncio.wait([done, drain], return_when=asyncio.FIRST_COMPLETED)
        if draining.is_set():
            await gateway.drain(10.0)
        else:
            await gateway.stop()
        done.cancel()
        drain.cancel()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    if "PL3XUS_NODE_DEBUG" in os.environ:
        logging.getLogger("pl3xus_rx.scaleout").setLevel(logging.DEBUG)
    asyncio.run(main(sys.argv[1:]))
