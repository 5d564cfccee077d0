"""Requests and queries that name their response (``Request[R]``, ``Query[R]``): the
registries read it, a round trip over 127.0.0.1 returns it, and mypy types every call site
with it (client, blocking client, server builders, handles)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, SyncProvider, connect
from pl3xus_rx import MutationContext, Query, Request, SyncServer
from pl3xus_rx.protocol import response_of
from pl3xus_rx.world import EntityId, World


class Boosted(BaseModel):
    speed: float


class Boost(Request[Boosted]):
    by: float


class Machine(BaseModel):
    speed: float = 1.0


class Count(BaseModel):
    machines: int


class CountMachines(Query[Count]):
    faster_than: float = 0.0


def boost(world: World, ctx: MutationContext, entity: EntityId, request: Boost) -> Boosted:
    machine = world.get(entity, Machine)
    assert machine is not None
    world.insert(entity, Machine(speed=machine.speed + request.by))
    return Boosted(speed=machine.speed + request.by)


def count(world: World, params: CountMachines) -> Count:
    return Count(machines=sum(m.speed > params.faster_than for _, m in world.query(Machine)))


def build() -> tuple[SyncServer, EntityId]:
    server = SyncServer()
    server.sync_component(Machine)
    server.request(Boost).targeted().register(boost)  # no .returns(): the model names it
    server.query(CountMachines).register(count)
    return server, server.world.spawn(Machine())


REGISTRY = (
    ClientTypeRegistry.builder()
    .register(Machine)
    .register_request(Boost)
    .register_query(CountMachines)
    .build()
)


def test_the_model_names_its_response() -> None:
    assert response_of(Boost) is Boosted
    assert response_of(CountMachines) is Count
    assert response_of(Boosted) is None

    class Faster(Boost):  # a subclass answers the same
        pass

    assert response_of(Faster) is Boosted


def test_registration_without_a_response_says_how_to_name_one() -> None:
    with pytest.raises(TypeError, match=r"class Machine\(Request\[Response\]\)"):
        ClientTypeRegistry.builder().register_request(Machine)
    with pytest.raises(TypeError, match="names Boosted as its response, not Count"):
        ClientTypeRegistry.builder().register_request(Boost, Count)
    server = SyncServer()
    with pytest.raises(TypeError, match=r"names Boosted as its response; \.returns\(\) says"):
        server.request(Boost).returns(Count).register(boost)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_typed_request_and_query_round_trip() -> None:
    server, machine = build()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY, command_timeout=10) as sync,
    ):
        answer = await sync.request(Boost(by=2.5), entity=int(machine))
        assert answer == Boosted(speed=3.5)
        counted = await sync.fetch(CountMachines(faster_than=3))
        assert counted == Count(machines=1)
        handle = sync.request_handle(Boost)
        assert await handle.call(Boost(by=1), entity=int(machine)) == Boosted(speed=4.5)
        assert handle.state.get().value == Boosted(speed=4.5)


def test_a_typed_request_through_the_blocking_client() -> None:
    server, machine = build()
    ready = threading.Event()
    stop = threading.Event()
    where: list[str] = []

    def serve() -> None:
        async def main() -> None:
            async with server.serve("127.0.0.1", 0) as (host, port):
                where.append(f"ws://{host}:{port}/")
                ready.set()
                await asyncio.get_running_loop().run_in_executor(None, stop.wait)

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        with connect(where[0], REGISTRY) as sync:
            assert sync.fetch(CountMachines()) == Count(machines=1)
            handle = sync.request_handle(Boost)
            done = sync.call(lambda: handle.call(Boost(by=1), entity=int(machine)))
            assert done == Boosted(speed=2.0)
    finally:
        stop.set()
        thread.join(10)


TYPED_PROGRAM = """
from typing import assert_type

from pydantic import BaseModel

from client_sync import BlockingSyncProvider, ClientTypeRegistry, RequestHandle, SyncProvider
from pl3xus_rx import MutationContext, Query, Request, SyncServer
from pl3xus_rx.sync import QueryRegistration, RequestRegistration
from pl3xus_rx.world import EntityId, World


class Boosted(BaseModel):
    speed: float


class Boost(Request[Boosted]):
    by: float


class Count(BaseModel):
    machines: int


class CountMachines(Query[Count]):
    pass


class Plain(BaseModel):
    x: int


def boost(world: World, ctx: MutationContext, entity: EntityId, request: Boost) -> Boosted:
    return Boosted(speed=request.by)


async def count(world: World, params: CountMachines) -> Count:
    return Count(machines=0)


server = SyncServer()
assert_type(server.request(Boost).targeted().register(boost), RequestRegistration[Boosted])
assert_type(server.query(CountMachines).register(count), QueryRegistration[Count])
registry = ClientTypeRegistry.builder().register_request(Boost).build()


async def client(sync: SyncProvider) -> None:
    assert_type(await sync.request(Boost(by=1), entity=3), Boosted)
    assert_type(await sync.fetch(CountMachines()), Count)
    assert_type(sync.request_handle(Boost), RequestHandle[Boosted])
    assert_type(await sync.request_handle(Boost).call(Boost(by=1)), Boosted)
    value = sync.query(CountMachines, CountMachines()).get().value
    assert_type(value, Count | None)


def blocking(sync: BlockingSyncProvider) -> None:
    assert_type(sync.fetch(CountMachines()), Count)
    handle = sync.request_handle(Boost)
    assert_type(sync.call(lambda: handle.call(Boost(by=1))), Boosted)
    assert_type(sync.call(lambda: 3), int)
"""

WRONG_PROGRAM = """
from pydantic import BaseModel

from pl3xus_rx import MutationContext, Request, SyncServer
from pl3xus_rx.world import World


class Boosted(BaseModel):
    speed: float


class Other(BaseModel):
    x: int


class Boost(Request[Boosted]):
    by: float


def wrong(world: World, ctx: MutationContext, request: Boost) -> Other:
    return Other(x=1)


SyncServer().request(Boost).register(wrong)
"""


@pytest.mark.slow
@pytest.mark.parametrize(("program", "errors"), [(TYPED_PROGRAM, 0), (WRONG_PROGRAM, 1)])
def test_mypy_types_every_call_site_with_the_response(
    program: str, errors: int, tmp_path: Path
) -> None:
    """``assert_type`` holds at every call site; a handler that answers another type is an
    error (the registration and the handler disagree)."""
    path = tmp_path / "typed_program.py"
    path.write_text(program)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    found = result.stdout.count(": error:")
    assert found == errors, result.stdout + result.stderr
    if errors:
        assert "register" in result.stdout and "Other" in result.stdout, result.stdout


class Beep(BaseModel):
    loud: bool = False


@pytest.mark.asyncio
async def test_a_one_way_message_under_its_own_wire_name_is_sent_and_handled() -> None:
    server = SyncServer()
    heard: list[tuple[int, Beep]] = []
    server.message(Beep).name("cell.beep").register(
        lambda world, ctx, beep: heard.append((ctx.connection, beep))
    )
    registry = ClientTypeRegistry.builder().register_message(Beep, "cell.beep").build()
    assert registry.message_name(Beep) == "cell.beep"
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", registry) as sync,
    ):
        sync.send(Beep(loud=True))
        for _ in range(200):
            if heard:
                break
            await asyncio.sleep(0.01)
        assert heard == [(sync.connection_id, Beep(loud=True))]


def test_an_entity_policy_on_an_untargeted_request_or_message_is_refused() -> None:
    server = SyncServer()
    with pytest.raises(TypeError, match=r"add \.targeted\(\)"):
        server.request(Boost).with_default_entity_policy().register(boost)
    with pytest.raises(TypeError, match=r"message 'Beep' has an entity policy"):
        server.message(Beep).with_default_entity_policy().register(lambda w, c, b: None)
    server.message(Beep).targeted().with_default_entity_policy().register(lambda w, c, e, b: None)
