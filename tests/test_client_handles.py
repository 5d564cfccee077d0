"""Client handles for commands: a request handle with a state signal and the last answer,
and refetching cached query answers; from async code and from the blocking client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import wait_until
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, RequestStatus, SyncProvider
from client_sync.blocking import connect
from pl3xus_rx import CommandTimeout, NotFound, SyncServer

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


class Load(BaseModel):
    program: int


class Loaded(BaseModel):
    name: str


class Count(BaseModel):
    shelf: str


class Stock(BaseModel):
    n: int


REGISTRY = (
    ClientTypeRegistry.builder().register_request(Load, Loaded).register_query(Count, Stock).build()
)


def make_server() -> tuple[SyncServer, dict[str, int]]:
    server = SyncServer()
    stock = {"a": 1, "b": 5}

    async def load(world: Any, ctx: Any, request: Load) -> Loaded:
        if request.program == 7:
            raise NotFound("no program 7")
        if request.program == 9:
            await asyncio.sleep(5)
        return Loaded(name=f"program {request.program}")

    server.request(Load).register(load)
    server.query(Count).returns(Stock).register(lambda world, query: Stock(n=stock[query.shelf]))
    return server, stock


async def test_a_request_handle_tracks_its_state_and_last_answer() -> None:
    server, _ = make_server()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync,
    ):
        handle = sync.request_handle(Load)
        states: list[Any] = []
        handle.state.subscribe(states.append)
        assert handle.state.get().status is RequestStatus.IDLE
        assert await handle.call(Load(program=3)) == Loaded(name="program 3")
        assert [s.status for s in states] == [
            RequestStatus.IDLE,
            RequestStatus.PENDING,
            RequestStatus.OK,
        ]
        with pytest.raises(NotFound):
            await handle.call(Load(program=7))
        last = handle.state.get()
        assert last.status is RequestStatus.ERROR and isinstance(last.error, NotFound)
        assert last.value == Loaded(name="program 3")  # the last answer is kept
        with pytest.raises(CommandTimeout):
            await handle.call(Load(program=9), timeout=0.2)  # a per-call timeout
        assert handle.state.get().status is RequestStatus.ERROR


async def test_refetch_asks_again_for_cached_query_answers() -> None:
    server, stock = make_server()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync,
    ):
        assert await sync.fetch(Count(shelf="b"), timeout=10) == Stock(n=5)  # once, not cached
        a, b = sync.query(Count, Count(shelf="a")), sync.query(Count, Count(shelf="b"))
        await wait_until(lambda: a.get().value == Stock(n=1) and b.get().value == Stock(n=5))
        stock["a"], stock["b"] = 2, 6
        assert sync.refetch(Count, Count(shelf="a")) == 1  # only that one
        await wait_until(lambda: a.get().value == Stock(n=2))
        assert b.get().value == Stock(n=5)
        assert sync.refetch(Count) == 2  # every cached answer
        await wait_until(lambda: b.get().value == Stock(n=6))


async def test_handles_from_the_blocking_client() -> None:
    server, stock = make_server()
    async with server.serve("127.0.0.1", 0) as (host, port):

        def use() -> tuple[Any, Any, int]:
            with connect(f"ws://{host}:{port}/", REGISTRY) as sync:
                handle = sync.request_handle(Load)
                answer = sync.call(lambda: handle.call(Load(program=4)))
                shelf = sync.query(Count, Count(shelf="a"))
                for _ in range(200):
                    if shelf.get().value is not None:
                        break
                    __import__("time").sleep(0.02)
                assert sync.fetch(Count(shelf="b")) == Stock(n=5)
                stock["a"] = 11
                refetched = sync.refetch(Count)
                for _ in range(200):
                    if shelf.get().value == Stock(n=11):
                        break
                    __import__("time").sleep(0.02)
                return answer, handle.state.get().status, refetched

        answer, status, refetched = await asyncio.to_thread(use)
        assert answer == Loaded(name="program 4") and status is RequestStatus.OK
        assert refetched == 1


class Speed(BaseModel):
    value: float


async def test_a_signal_of_mutations_in_flight_and_failed_by_field() -> None:
    from client_sync import MutationStatus
    from pl3xus_rx import Authorized, InvalidValue

    server = SyncServer()
    gate = asyncio.Event()

    async def slow(world: Any, ctx: Any, entity: Any, value: Speed) -> None:
        await gate.wait()
        if value.value < 0:
            raise InvalidValue("must not be negative", field="value")
        world.insert(entity, value)

    server.sync_component_builder(Speed).with_entity_policy(
        lambda world, ctx, entity: Authorized()
    ).with_handler(slow).build()
    robot = server.world.spawn(Speed(value=0))
    registry = ClientTypeRegistry.builder().register(Speed).build()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", registry) as sync,
    ):
        key = (robot, "Speed")
        saving = asyncio.create_task(sync.mutate(robot, Speed(value=1)))
        await wait_until(lambda: key in sync.mutations.get())
        assert sync.mutations.get()[key].status is MutationStatus.LOADING
        gate.set()
        await saving
        assert key not in sync.mutations.get()  # saved: no mark left
        with pytest.raises(InvalidValue):
            await sync.mutate(robot, Speed(value=-1))
        failed = sync.mutations.get()[key]
        assert failed.status is MutationStatus.ERROR and isinstance(failed.error, InvalidValue)
        await sync.mutate(robot, Speed(value=2))
        assert sync.mutations.get() == {}


async def test_query_answers_are_shared_and_dropped_with_their_last_observer() -> None:
    server, stock = make_server()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync,
    ):
        first = sync.query(Count, Count(shelf="a"))
        assert sync.query(Count, Count(shelf="a")) is first  # shared by equal params
        assert sync.query(Count, Count(shelf="b")) is not first  # keyed by params
        one = first.subscribe(lambda _: None)
        two = first.subscribe(lambda _: None)
        await wait_until(lambda: first.get().value == Stock(n=1))
        one.dispose()
        assert sync.query(Count, Count(shelf="a")) is first  # still observed
        two.dispose()  # the last observer: dropped from the cache
        stock["a"] = 3
        again = sync.query(Count, Count(shelf="a"))
        assert again is not first
        await wait_until(lambda: again.get().value == Stock(n=3))  # asked afresh
