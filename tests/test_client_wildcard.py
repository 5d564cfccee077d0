"""``sync.entities()``: one signal over every registered type the server syncs."""

from __future__ import annotations

import pytest
from conftest import wait_until
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import SyncServer

pytestmark = pytest.mark.asyncio


class Position(BaseModel):
    x: float


class Label(BaseModel):
    text: str


class NotOnServer(BaseModel):
    n: int


async def test_entities_merges_every_synced_type_and_follows_changes() -> None:
    server = SyncServer()
    server.sync_component(Position)
    server.sync_component(Label)
    world = server.world
    a = world.spawn(Position(x=1), Label(text="a"))
    b = world.spawn(Label(text="b"))
    world.spawn(NotOnServer(n=1))  # never synced
    registry = (
        ClientTypeRegistry.builder().register(Position).register(Label).register(NotOnServer)
    ).build()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", registry) as sync,
    ):
        everything = sync.entities()
        assert sync.entities() is everything  # shared
        seen: list[int] = []
        watch = everything.subscribe(lambda m: seen.append(len(m)))
        await sync.wait_synced(10)
        await wait_until(lambda: len(everything.get()) == 2)
        got = everything.get()
        assert dict(got[a]) == {Position: Position(x=1), Label: Label(text="a")}
        assert dict(got[b]) == {Label: Label(text="b")}
        # both types subscribed (and not the one the server does not sync)
        assert server.engine.statistics().subscriptions == 2
        world.remove(a, Label)
        world.insert(b, Position(x=5))
        await wait_until(lambda: dict(everything.get()[a]) == {Position: Position(x=1)})
        await wait_until(lambda: Position in everything.get()[b])
        world.despawn(b)
        await wait_until(lambda: list(everything.get()) == [a])
        watch.dispose()  # no observer left: the subscriptions end
        await wait_until(lambda: server.engine.statistics().subscriptions == 0)
