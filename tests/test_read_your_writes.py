"""When mutate() returns ok, every signal of the caller that covers the entity shows the new
value: across reconnects with snapshots in parts, subscription rate caps and deadbands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, ConnectionState, ReconnectPolicy, SyncProvider
from pl3xus_rx import Authorized, NetworkSettings, SyncServer, SyncSettings

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


class Setpoint(BaseModel):
    value: float


REGISTRY = ClientTypeRegistry.builder().register(Setpoint).build()
FAST = ReconnectPolicy(initial_delay=0.01, max_delay=0.05)


def anyone(world: Any, ctx: Any, entity: int) -> Authorized:
    return Authorized()


def make_server(rate_hz: float = 200, parts: int = 20_000, **kw: Any) -> SyncServer:
    srv = SyncServer(
        NetworkSettings(rate_limit_per_second=None),
        SyncSettings(max_update_rate_hz=rate_hz, max_snapshot_items=parts),
        **kw,
    )
    srv.sync_component_builder(Setpoint).with_entity_policy(anyone).build()
    return srv


async def until(cond: Callable[[], Any], what: str = "", timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[tuple[SyncServer, list[int], str]]:
    srv = make_server()
    ents = [srv.world.spawn(Setpoint(value=0)) for _ in range(10)]
    async with srv.serve("127.0.0.1", 0) as (host, port):
        yield srv, ents, f"ws://{host}:{port}/"


async def test_after_a_reconnect_while_the_snapshot_arrives_in_parts() -> None:
    srv = make_server(rate_hz=20, parts=50)  # 200 entities: four parts, 50 ms apart
    ents = [srv.world.spawn(Setpoint(value=0)) for _ in range(200)]
    last = ents[-1]
    async with (
        srv.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY, reconnect=FAST) as sync,
    ):
        points = sync.components(Setpoint)
        one = sync.entity_component(Setpoint, last)
        points.subscribe(lambda _: None)
        one.subscribe(lambda _: None)
        await sync.wait_synced(10)
        for attempt in range(1, 4):
            await srv.net.disconnect(srv.net.connections[0], reason="forced")
            await until(lambda: sync.connection.get().state is ConnectionState.RECONNECTING)
            await until(lambda: sync.connection.get().state is ConnectionState.OPEN)
            assert sync.stale.get(), "the renewed snapshot should still be arriving"
            await sync.mutate(last, Setpoint(value=attempt))
            assert points.get()[last] == Setpoint(value=attempt)
            assert one.get() == Setpoint(value=attempt)
            await sync.wait_synced(10)


async def test_with_a_rate_capped_subscription(rig: tuple[SyncServer, list[int], str]) -> None:
    _srv, ents, url = rig
    async with SyncProvider(url, REGISTRY) as sync:
        slow = sync.components(Setpoint, max_rate_hz=1)
        slow.subscribe(lambda _: None)
        await sync.wait_synced(10)
        for value in (1.0, 2.0):  # the first within a second of the snapshot: held back
            await sync.mutate(ents[0], Setpoint(value=value))
            assert slow.get()[ents[0]] == Setpoint(value=value)
            assert not sync.stale.get()


async def test_with_two_subscriptions_of_different_rates(
    rig: tuple[SyncServer, list[int], str],
) -> None:
    _srv, ents, url = rig
    async with SyncProvider(url, REGISTRY) as sync:
        fast = sync.components(Setpoint)
        slow = sync.components(Setpoint, max_rate_hz=2)
        fast.subscribe(lambda _: None)
        slow.subscribe(lambda _: None)
        await sync.wait_synced(10)
        for value in (3.0, 4.0, 5.0):
            await sync.mutate(ents[1], Setpoint(value=value))
            assert fast.get()[ents[1]] == Setpoint(value=value)
            assert slow.get()[ents[1]] == Setpoint(value=value)


async def test_with_a_deadband_the_callers_own_write_passes_it(
    rig: tuple[SyncServer, list[int], str],
) -> None:
    srv, ents, url = rig
    async with SyncProvider(url, REGISTRY) as writer, SyncProvider(url, REGISTRY) as watcher:
        mine = writer.components(Setpoint, deadband=5.0)
        theirs = watcher.components(Setpoint, deadband=5.0)
        mine.subscribe(lambda _: None)
        theirs.subscribe(lambda _: None)
        await writer.wait_synced(10)
        await watcher.wait_synced(10)
        await writer.mutate(ents[2], Setpoint(value=1.0))  # moves less than the deadband
        assert mine.get()[ents[2]] == Setpoint(value=1.0)
        # Others' deadbands still apply: a later, larger change reaches the watcher first.
        srv.world.insert(ents[3], Setpoint(value=50.0))
        await until(lambda: theirs.get()[ents[3]].value == 50.0, "the larger change")
        assert theirs.get()[ents[2]] == Setpoint(value=0.0)
        # A write whose value the caller already holds is answered without a resend.
        await writer.mutate(ents[2], Setpoint(value=1.0))
        assert mine.get()[ents[2]] == Setpoint(value=1.0)


async def test_an_async_handler_that_writes_before_it_awaits() -> None:
    # The change may go out (or be suppressed by a deadband) before the command finishes.
    srv = SyncServer(sync=SyncSettings(max_update_rate_hz=200))

    async def handler(world: Any, ctx: Any, entity: int, value: Setpoint) -> None:
        world.insert(entity, value)
        await asyncio.sleep(0.05)  # several flushes happen meanwhile

    (srv.sync_component_builder(Setpoint).with_entity_policy(anyone).with_handler(handler).build())
    e = srv.world.spawn(Setpoint(value=0))
    async with (
        srv.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync,
    ):
        banded = sync.components(Setpoint, deadband=10.0)
        banded.subscribe(lambda _: None)
        await sync.wait_synced(10)
        await sync.mutate(e, Setpoint(value=2.0))
        assert banded.get()[e] == Setpoint(value=2.0)


async def test_a_reply_never_waits_on_a_rate_the_client_chose(
    rig: tuple[SyncServer, list[int], str],
) -> None:
    # A subscription capped at one send per 1,000 s must not park replies (and the server's
    # memory) for that long: the caller's own writes pass its rate cap.
    srv, ents, url = rig
    async with SyncProvider(url, REGISTRY, command_timeout=5) as sync:
        glacial = sync.components(Setpoint, max_rate_hz=0.001)
        glacial.subscribe(lambda _: None)
        await sync.wait_synced(10)
        for value in range(1, 51):
            await sync.mutate(ents[4], Setpoint(value=float(value)))
            assert glacial.get()[ents[4]] == Setpoint(value=float(value))
        assert srv.engine._replies.waiting == []  # internal: nothing left waiting
