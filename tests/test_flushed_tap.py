"""``server.flushed(T)``: a tap on exactly what each flush sends of a type (conflated)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import wait_until
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import NotRegistered, SyncServer, SyncSettings
from pl3xus_rx.protocol import FrameKind
from pl3xus_rx.sync import FlushedChanges, SyncEngine
from pl3xus_rx.world import World


class Speed(BaseModel):
    value: float


class Other(BaseModel):
    n: int


def engine() -> SyncEngine:
    from pl3xus_rx.sync import ComponentRegistry

    registry = ComponentRegistry()
    registry.add(Speed)
    return SyncEngine(World(), registry, SyncSettings(max_update_rate_hz=1000))


def test_the_tap_sees_each_flush_conflated_even_without_subscribers() -> None:
    eng = engine()
    world = eng.world
    a = world.spawn(Speed(value=1))
    b = world.spawn(Speed(value=2))
    seen: list[FlushedChanges[Speed]] = []
    tap = eng.flushed(Speed).subscribe(seen.append)
    for v in range(10):  # ten changes of a, one flush: one upsert with the last value
        world.insert(a, Speed(value=v))
    world.remove(b, Speed)
    c = world.spawn(Speed(value=7))
    world.despawn(c)
    assert eng.flush(1.0) == []  # no client: no frames, but the tap sees the batch
    [batch] = seen
    assert batch.component is Speed
    assert dict(batch.upserts) == {a: Speed(value=9)}
    assert batch.removed == (b,) and batch.despawned == (c,)
    eng.flush(2.0)
    assert len(seen) == 1  # nothing changed: nothing emitted
    tap.dispose()
    world.insert(a, Speed(value=100))
    eng.flush(3.0)
    assert len(seen) == 1  # disposed: the type is no longer tracked
    assert not eng._trackers  # type: ignore[attr-defined]
    with pytest.raises(NotRegistered):
        eng.flushed(Other)


def test_a_subscriber_leaving_keeps_the_tap_tracking() -> None:
    eng = engine()
    a = eng.world.spawn(Speed(value=1))
    seen: list[FlushedChanges[Speed]] = []
    eng.flushed(Speed).subscribe(seen.append)
    eng.add_client(1)
    eng.handle_frame(1, True, [FrameKind.SUBSCRIBE, 1, "Speed", None, {}])
    eng.flush(1.0)
    eng.remove_client(1)
    eng.world.insert(a, Speed(value=5))
    eng.flush(2.0)
    assert dict(seen[-1].upserts) == {a: Speed(value=5)}


@pytest.mark.asyncio
async def test_the_tap_matches_what_a_client_receives() -> None:
    server = SyncServer(sync=SyncSettings(max_update_rate_hz=20))
    server.sync_component(Speed)
    ids = [server.world.spawn(Speed(value=0)) for _ in range(5)]
    recorded: dict[int, Any] = {}
    batches: list[int] = []

    def record(batch: FlushedChanges[Speed]) -> None:
        batches.append(len(batch.upserts))
        recorded.update(batch.upserts)
        for entity in batch.despawned:
            recorded.pop(entity, None)

    server.flushed(Speed).subscribe(record)
    registry = ClientTypeRegistry.builder().register(Speed).build()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", registry) as sync,
    ):
        speeds = sync.components(Speed)
        speeds.subscribe(lambda _: None)
        await sync.wait_synced(10)
        for step in range(1, 30):
            server.world.insert(ids[step % 5], Speed(value=step))
        server.world.despawn(ids[0])
        await wait_until(
            lambda: dict(speeds.get()) == {e: server.world.get(e, Speed) for e in ids[1:]}
        )
        await wait_until(lambda: recorded == dict(speeds.get()))
        assert sum(batches) < 29  # conflated: fewer upserts than changes
