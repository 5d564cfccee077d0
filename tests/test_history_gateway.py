"""History through a gateway, over a real nats-server: the authority keeps it and answers;
a gateway's client gets exactly what a direct client gets, under the same visibility."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import UNIT, wait_until
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import Identity, NotFound, SyncServer, SyncSettings, bearer_tokens

pytest.importorskip("nats")
from test_scaleout import NatsServer, nats_server  # noqa: F401  (the fixture)

from pl3xus_rx.scaleout import Authority, Gateway

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60), pytest.mark.slow]


class Speed(BaseModel):
    value: float


class Line(BaseModel):
    site: str
    rate: float = 0.0


REGISTRY = ClientTypeRegistry.builder().register(Speed).register(Line).build()

TOKENS = {
    "north-token": Identity.of("nora", "operator", site="north"),
    "south-token": Identity.of("sam", "operator", site="south"),
}


def make() -> SyncServer:
    """The same app on the authority and the gateway."""
    server = SyncServer(sync=SyncSettings(max_update_rate_hz=100))
    server.authenticate(bearer_tokens(TOKENS))
    server.sync_component_builder(Speed).history(seconds=60, fields=["value"]).build()

    def own_site(world: Any, identity: Identity, entity: Any) -> bool:
        line = world.get(entity, Line)
        return line is not None and line.site == identity.claims.get("site")

    server.sync_component_builder(Line).visible_to(own_site).history(seconds=60).build()
    return server


async def test_history_through_a_gateway_equals_history_direct(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    authority_server = make()
    world = authority_server.world
    north = world.spawn(Line(site="north"))
    south = world.spawn(Line(site="south"))
    robot = world.spawn(Speed(value=0))
    async with (
        authority_server.serve("127.0.0.1", 0) as (host, port),
        Authority(authority_server, nats_server.url, "cell"),
    ):
        gw_server = make()
        async with (
            gw_server.serve("127.0.0.1", 0) as (ghost, gport),
            Gateway(gw_server, nats_server.url, "cell"),
            SyncProvider(f"ws://{host}:{port}/", REGISTRY, token="north-token") as direct,
            SyncProvider(f"ws://{ghost}:{gport}/", REGISTRY, token="north-token") as via,
        ):
            for i in range(1, 8):
                world.insert(robot, Speed(value=i))
                world.insert(north, Line(site="north", rate=i))
                await asyncio.sleep(0.02)
            await wait_until(lambda: authority_server.history.statistics().points >= 14, 5, "kept")
            assert via.history_kept == direct.history_kept
            assert via.history_kept["Line"] == {"seconds": 60.0, "fields": None}
            for args in ((Speed, robot, "value"), (Line, north, None), (Line, north, "rate")):
                asked = await direct.fetch_history(*args, timeout=UNIT)
                through = await via.fetch_history(*args, timeout=UNIT)
                assert through == asked and len(asked) >= 7
            assert [v for _, v in await via.fetch_history(Speed, robot, "value")][-7:] == [
                float(i) for i in range(1, 8)
            ]
            # visibility holds on the authority, for the gateway's client's identity
            for sync in (direct, via):
                with pytest.raises(NotFound, match=f"no entity {south} with Line"):
                    await sync.fetch_history(Line, south, timeout=UNIT)
            # the live continuation through the gateway
            trend = via.history(Speed, robot, "value", seconds=60)
            trend.subscribe(lambda _: None)
            await wait_until(lambda: len(trend.get()) >= 7, 5, "the past")
            world.insert(robot, Speed(value=99))
            await wait_until(lambda: trend.get()[-1][1] == 99.0, 5, "live")
            assert gw_server.history.statistics().points == 0  # (the authority keeps it)
