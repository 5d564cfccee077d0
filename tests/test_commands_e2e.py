"""Commands end to end: a real SyncServer and client_sync over 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from conftest import wait_until
from pydantic import BaseModel, ConfigDict, Field, computed_field

from client_sync import (
    ClientTypeRegistry,
    MutationStatus,
    QueryStatus,
    ReconnectPolicy,
    SyncProvider,
)
from pl3xus_rx import (
    CommandTimeout,
    ConnectionLost,
    Forbidden,
    InvalidValue,
    NotFound,
    ServerError,
    SyncServer,
    SyncSettings,
)
from pl3xus_rx.world import World

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


class Speed(BaseModel):
    value: float = Field(ge=0, le=10)


class Label(BaseModel):
    text: str


class Jog(BaseModel):
    dx: float


class JogResult(BaseModel):
    x: float


class Pos(BaseModel):
    x: float = 0


class Slow(BaseModel):
    seconds: float


class Done(BaseModel):
    ok: bool


class Inventory(BaseModel):
    cell: int


class InventoryCount(BaseModel):
    count: int


class Chat(BaseModel):
    text: str


REGISTRY = (
    ClientTypeRegistry.builder()
    .register(Speed)
    .register(Label)
    .register(Pos)
    .register_request(Jog, JogResult)
    .register_request(Slow, Done)
    .register_query(Inventory, InventoryCount)
    .build()
)


def make_server() -> SyncServer:
    srv = SyncServer(sync=SyncSettings(max_update_rate_hz=200))
    srv.sync_component(Label)
    srv.sync_component(Pos)
    (srv.sync_component_builder(Speed).targeted().with_default_entity_policy().build())

    def jog(world: World, ctx: Any, entity: int, req: Jog) -> JogResult:
        with world.modify(entity, Pos) as pos:
            pos.x += req.dx
        return JogResult(x=world.get(entity, Pos).x)  # type: ignore[union-attr]

    srv.request(Jog).targeted().with_default_entity_policy().register(jog)

    async def slow(world: World, ctx: Any, req: Slow) -> Done:
        await asyncio.sleep(req.seconds)
        return Done(ok=True)

    srv.request(Slow).register(slow)
    srv.stock = {1: 3}  # type: ignore[attr-defined]

    def inventory(world: World, q: Inventory) -> InventoryCount:
        return InventoryCount(count=srv.stock.get(q.cell, 0))  # type: ignore[attr-defined]

    srv.query(Inventory).register(inventory)
    srv.register_message(Chat)
    return srv


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[SyncServer, str]]:
    srv = make_server()
    async with srv.serve("127.0.0.1", 0) as (host, port):
        yield srv, f"ws://{host}:{port}/"


async def until(cond: Callable[[], Any], what: str = "") -> None:
    await wait_until(cond, 5, what)


async def test_mutate_allowed_forbidden_and_invalid(served: tuple[SyncServer, str]) -> None:
    srv, url = served
    robot = srv.world.spawn(Speed(value=1), Label(text="r1"), Pos())
    async with SyncProvider(url, REGISTRY) as sync:
        speeds = sync.components(Speed)
        speeds.subscribe(lambda _: None)
        with pytest.raises(Forbidden, match="read-only"):
            await sync.mutate(robot, Label(text="hacked"))
        with pytest.raises(Forbidden, match="does not control"):
            await sync.mutate(robot, Speed(value=2))
        with pytest.raises(InvalidValue) as info:
            await sync.mutate(robot, Speed.model_construct(value=99))
        assert info.value.errors[0]["loc"] == "value"
        with pytest.raises(NotFound):
            await sync.mutate(9999, Speed(value=1))
        await sync.take_control(robot)
        await sync.mutate(robot, Speed(value=2))
        # Meteor's rule: once mutate() returns, this client already sees its change
        assert speeds.get()[robot] == Speed(value=2)
        assert srv.world.get(robot, Speed) == Speed(value=2)


async def test_two_clients_contend_for_control(served: tuple[SyncServer, str]) -> None:
    srv, url = served
    robot = srv.world.spawn(Pos(x=0), Speed(value=0))
    async with SyncProvider(url, REGISTRY) as alice, SyncProvider(url, REGISTRY) as bob:
        notices: list[Any] = []
        alice.notices.subscribe(notices.append)
        holder = bob.control(robot)
        holder.subscribe(lambda _: None)
        await alice.take_control(robot)
        await until(lambda: holder.get() == alice.connection_id, "bob sees alice holds it")
        with pytest.raises(Forbidden, match=f"controlled by connection {alice.connection_id}"):
            await bob.take_control(robot)
        await until(lambda: notices, "alice is told bob asked")
        assert notices[0].kind == "control_requested" and notices[0].detail["by"] == (
            bob.connection_id
        )
        # only the holder's targeted requests pass
        assert (await alice.request(Jog(dx=1.5), entity=robot)) == JogResult(x=1.5)
        with pytest.raises(Forbidden):
            await bob.request(Jog(dx=1), entity=robot)
        assert srv.world.get(robot, Pos) == Pos(x=1.5)
        await alice.close()  # the holder disconnects: control is free
        await until(lambda: holder.get() is None, "control released")
        await bob.take_control(robot)
        assert (await bob.request(Jog(dx=1), entity=robot)).x == 2.5


async def test_request_timeout_and_errors(served: tuple[SyncServer, str]) -> None:
    _, url = served
    async with SyncProvider(url, REGISTRY, command_timeout=2) as sync:
        assert await sync.request(Slow(seconds=0.01)) == Done(ok=True)
        with pytest.raises(CommandTimeout, match=r"within 0\.05 s"):
            await sync.request(Slow(seconds=1), timeout=0.05)
        with pytest.raises(NotFound):
            await sync.request(Jog(dx=1), entity=12345)


async def test_handler_failure_is_a_server_error(served: tuple[SyncServer, str]) -> None:
    srv, url = served

    class Boom(BaseModel):
        n: int

    def boom(world: World, ctx: Any, req: Boom) -> Done:
        raise RuntimeError("bad day")

    srv.request(Boom).register(boom)
    registry = ClientTypeRegistry.builder().register_request(Boom, Done).build()
    async with SyncProvider(url, registry) as sync:
        with pytest.raises(ServerError, match="the handler for Boom failed") as info:
            await sync.request(Boom(n=1))
        assert "bad day" not in str(info.value)  # internals stay in the server's log
    async with SyncProvider(url, REGISTRY) as again:  # the server carries on
        assert await again.request(Slow(seconds=0)) == Done(ok=True)


async def test_query_refetched_after_invalidation(served: tuple[SyncServer, str]) -> None:
    srv, url = served
    async with SyncProvider(url, REGISTRY) as sync:
        answer = sync.query(Inventory, Inventory(cell=1))
        assert sync.query(Inventory, Inventory(cell=1)) is answer  # cached
        await until(lambda: answer.get().status is QueryStatus.READY)
        assert answer.get().value == InventoryCount(count=3)
        srv.stock[1] = 5  # type: ignore[attr-defined]
        srv.invalidate(Inventory, [Inventory(cell=2)])  # another key: no refetch
        await asyncio.sleep(0.05)
        assert answer.get().value == InventoryCount(count=3)
        srv.invalidate(Inventory, [Inventory(cell=1)])
        await until(lambda: answer.get().value == InventoryCount(count=5), "refetch")


async def test_mutation_handle_state(served: tuple[SyncServer, str]) -> None:
    srv, url = served
    robot = srv.world.spawn(Speed(value=0))
    async with SyncProvider(url, REGISTRY) as sync:
        handle = sync.mutation(Speed)
        states: list[MutationStatus] = []
        handle.state.subscribe(lambda s: states.append(s.status))
        with pytest.raises(Forbidden):
            await handle.mutate(robot, Speed(value=1))
        await sync.take_control(robot)
        await handle.mutate(robot, Speed(value=1))
    assert states == [
        MutationStatus.IDLE,
        MutationStatus.LOADING,
        MutationStatus.ERROR,
        MutationStatus.LOADING,
        MutationStatus.SUCCESS,
    ]


async def test_plain_messages_both_ways(served: tuple[SyncServer, str]) -> None:
    srv, url = served
    got: list[Any] = []
    srv.net.messages(Chat).subscribe(got.append)
    async with SyncProvider(url, REGISTRY) as sync:
        back: list[Chat] = []
        sync.messages(Chat).subscribe(back.append)
        sync.send(Chat(text="hello server"))
        await until(lambda: got)
        srv.net.send(got[0].source, Chat(text="hello client"))
        await until(lambda: back)
    assert got[0].message.text == "hello server" and back[0].text == "hello client"


async def test_in_flight_mutation_fails_with_connection_lost_and_is_not_doubled() -> None:
    applied: list[float] = []
    release = asyncio.Event()

    async def on_speed(world: World, ctx: Any, entity: int, value: Speed) -> None:
        await release.wait()  # slow: the server goes away before answering
        applied.append(value.value)
        world.insert(entity, value)

    def build() -> SyncServer:
        srv = SyncServer()
        srv.sync_component_builder(Speed).with_handler(on_speed).build()
        return srv

    first = build()
    robot = first.world.spawn(Speed(value=0))
    ctx = first.serve("127.0.0.1", 0)
    host, port = await ctx.__aenter__()
    policy = ReconnectPolicy(initial_delay=0.02, max_delay=0.1)
    async with SyncProvider(f"ws://{host}:{port}/", REGISTRY, reconnect=policy) as sync:
        pending = asyncio.create_task(sync.mutate(robot, Speed(value=7)))
        await asyncio.sleep(0.1)
        assert not pending.done()
        await ctx.__aexit__(None, None, None)  # the server goes away mid-command
        with pytest.raises(ConnectionLost, match="not re-sent"):
            await asyncio.wait_for(pending, 5)
        second = build()
        second.world.spawn(Speed(value=0))
        release.set()
        async with second.serve(host, port):  # the client reconnects: nothing is re-sent
            await until(lambda: not sync.stale.get(), "reconnected")
            await asyncio.sleep(0.1)
            assert applied == [] and second.world.get(robot, Speed) == Speed(value=0)
        with pytest.raises(ConnectionLost, match="not connected"):
            await sync.mutate(robot, Speed(value=1))


async def test_one_way_targeted_message(served: tuple[SyncServer, str]) -> None:
    srv, url = served

    class Beep(BaseModel):
        hz: int

    heard: list[tuple[int, int]] = []
    (
        srv.message(Beep)
        .targeted()
        .with_default_entity_policy()
        .register(lambda world, ctx, entity, msg: heard.append((entity, msg.hz)))
    )
    robot = srv.world.spawn(Pos())
    async with SyncProvider(url, REGISTRY) as sync:
        errors: list[Exception] = []
        sync.errors.subscribe(errors.append)
        sync.send(Beep(hz=440), entity=robot)  # no control: rejected, told by a notice
        await until(lambda: errors)
        assert isinstance(errors[0], Forbidden) and "Beep" in str(errors[0])
        await sync.take_control(robot)
        sync.send(Beep(hz=880), entity=robot)
        await until(lambda: heard)
    assert heard == [(robot, 880)]


class Gauge(BaseModel):
    """Aliases everywhere, and a config that dumps by alias: the wire still uses names."""

    model_config = ConfigDict(serialize_by_alias=True)
    level: float = Field(alias="lvl")
    at: datetime.datetime = Field(serialization_alias="timestamp")


class Calibrate(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, extra="forbid")
    offset: float = Field(alias="off")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def negative(self) -> bool:
        return self.offset < 0


class Calibrated(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)
    new_level: float = Field(alias="newLevel")


class Tank(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)
    tank_id: int = Field(alias="tankId")


class TankLevel(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)
    tank_level: float = Field(alias="tankLevel")


class Note(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, extra="forbid")
    body_text: str = Field(alias="bodyText")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def length(self) -> int:  # computed by each side, never sent (extra keys are forbidden)
        return len(self.body_text)


async def test_models_with_aliases_work_end_to_end() -> None:
    t0 = datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)
    srv = SyncServer(sync=SyncSettings(max_update_rate_hz=200))
    srv.sync_component_builder(Gauge).targeted().with_default_entity_policy().field_deltas().build()

    def calibrate(world: World, ctx: Any, entity: int, req: Calibrate) -> Calibrated:
        gauge = world.get(entity, Gauge)
        assert gauge is not None
        world.insert(entity, Gauge(lvl=gauge.level + req.offset, at=gauge.at))
        return Calibrated(newLevel=gauge.level + req.offset)

    srv.request(Calibrate).targeted().with_default_entity_policy().register(calibrate)
    srv.query(Tank).returns(TankLevel).register(lambda w, q: TankLevel(tankLevel=q.tank_id * 1.5))
    srv.register_message(Note)
    heard: list[Any] = []
    srv.net.messages(Note).subscribe(heard.append)
    tank = srv.world.spawn(Gauge(lvl=1.0, at=t0))
    registry = (
        ClientTypeRegistry.builder()
        .register(Gauge)
        .register_request(Calibrate, Calibrated)
        .register_query(Tank, TankLevel)
        .build()
    )
    async with (
        srv.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", registry) as sync,
    ):
        gauges = sync.components(Gauge)
        gauges.subscribe(lambda _: None)
        await until(lambda: tank in gauges.get(), "snapshot")
        assert gauges.get()[tank] == Gauge(lvl=1.0, at=t0)
        await sync.take_control(tank)
        await sync.mutate(tank, Gauge(lvl=2.0, at=t0))  # a mutation, then a field delta
        await until(lambda: gauges.get()[tank].level == 2.0, "mutation")
        reply = await sync.request(Calibrate(off=0.5), entity=tank)
        assert reply == Calibrated(newLevel=2.5)
        await until(lambda: gauges.get()[tank] == Gauge(lvl=2.5, at=t0), "delta")
        answer = sync.query(Tank, Tank(tankId=4))
        await until(lambda: answer.get().value == TankLevel(tankLevel=6.0), "query")
        sync.send(Note(bodyText="hello"))
        await until(lambda: heard, "message")
        assert heard[0].message == Note(bodyText="hello")
