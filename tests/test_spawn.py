"""Clients spawning and despawning entities (SPAWN / DESPAWN), off until the server allows
it, and then under its rules and policies. Real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import UNIT
from pydantic import BaseModel, Field

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import (
    Authorized,
    Denied,
    Forbidden,
    InvalidValue,
    NotFound,
    SyncServer,
    SyncSettings,
)

pytestmark = pytest.mark.asyncio


class Program(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    steps: int = 0


class Cell(BaseModel):
    title: str


class Note(BaseModel):
    text: str


class Programs(BaseModel):
    """A query: the names of every program."""


class ProgramNames(BaseModel):
    names: list[str]


REGISTRY = (
    ClientTypeRegistry.builder()
    .register(Program)
    .register(Cell)
    .register(Note)
    .register_query(Programs, ProgramNames)
    .build()
)


def make_server() -> tuple[SyncServer, int]:
    server = SyncServer(sync=SyncSettings(max_value_bytes=64 * 1024))
    server.sync_component_builder(Program).with_default_entity_policy().invalidates(
        Programs
    ).build()
    server.sync_component(Cell)  # read-only for clients
    server.sync_component_builder(Note).with_default_entity_policy().build()
    server.query(Programs).returns(ProgramNames).register(
        lambda world, q: ProgramNames(names=sorted(p.name for _, p in world.query(Program)))
    )
    cell = server.world.spawn(Cell(title="cell 1"))
    return server, cell


async def test_spawning_is_off_until_the_server_allows_it() -> None:
    server, cell = make_server()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync,
    ):
        with pytest.raises(Forbidden, match="allow_spawn"):
            await sync.spawn(Program(name="weld"), parent=cell, timeout=UNIT)
        with pytest.raises(Forbidden, match="allow_despawn"):
            await sync.despawn(cell, timeout=UNIT)
        assert len(server.world.entities()) == 1


async def test_a_client_spawns_and_despawns_under_the_rules() -> None:
    server, cell = make_server()
    asked: list[Any] = []

    def spawn_policy(world: Any, ctx: Any, parent: Any, components: list[BaseModel]) -> Any:
        asked.append((parent, components))
        if any(isinstance(c, Program) and c.name == "forbidden" for c in components):
            return Denied("that name is reserved")
        return Authorized()

    server.allow_spawn(spawn_policy)
    server.allow_despawn()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as ann,
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as bob,
    ):
        programs = ann.components(Program)
        programs.subscribe(lambda _: None)
        names = ann.query(Programs, Programs())
        await ann.wait_synced(UNIT)

        # spawned under the cell: the id comes back, and ann's signal already holds it
        weld = await ann.spawn(Program(name="weld", steps=3), Note(text="v1"), parent=cell)
        assert programs.get()[weld] == Program(name="weld", steps=3)
        assert server.world.parent(weld) == cell
        assert server.world.get(weld, Note) == Note(text="v1")
        assert asked[-1] == (cell, [Program(name="weld", steps=3), Note(text="v1")])
        # the query that Program invalidates is refetched
        for _ in range(100):
            if names.get().value == ProgramNames(names=["weld"]):
                break
            await asyncio.sleep(0.02)
        assert names.get().value == ProgramNames(names=["weld"])

        # the rules, each with its reason
        with pytest.raises(Forbidden, match="reserved"):
            await ann.spawn(Program(name="forbidden"), timeout=UNIT)
        with pytest.raises(Forbidden, match="Cell is read-only for clients"):
            await ann.spawn(Cell(title="mine"), timeout=UNIT)
        with pytest.raises(NotFound, match="entity 999 does not exist"):
            await ann.spawn(Program(name="x"), parent=999, timeout=UNIT)
        with pytest.raises(InvalidValue) as invalid:
            await ann.spawn(Note(text="y" * 70_000), timeout=UNIT)
        assert "max_value_bytes" in invalid.value.message
        with pytest.raises(ValueError, match="two components of the same type"):
            await ann.spawn(Note(text="a"), Note(text="b"))
        before = len(server.world.entities())
        # a value the server's model refuses: the field is named (sent as raw JSON)
        bad_id, bad = ann._session.spawn(None, {"Program": {"name": "", "steps": 1}})

        async def raw_spawn() -> Any:
            return await ann._command(lambda: (bad_id, bad), UNIT)

        with pytest.raises(InvalidValue) as raised:
            await raw_spawn()
        assert [e["loc"] for e in raised.value.errors or []] == ["name"]
        assert len(server.world.entities()) == before  # nothing half made

        # control: bob takes the cell; ann can neither spawn under it nor despawn below it
        await bob.take_control(cell)
        with pytest.raises(Forbidden, match=f"entity {cell} is controlled by"):
            await ann.spawn(Program(name="spot"), parent=cell, timeout=UNIT)
        with pytest.raises(Forbidden, match=f"entity {cell} is controlled by"):
            await ann.despawn(weld, timeout=UNIT)
        await bob.release_control(cell)

        await ann.despawn(weld, timeout=UNIT)
        assert not server.world.contains(weld)
        for _ in range(100):
            if weld not in programs.get():
                break
            await asyncio.sleep(0.02)
        assert weld not in programs.get()
        with pytest.raises(NotFound):
            await ann.despawn(weld, timeout=UNIT)


async def test_a_despawn_policy_decides() -> None:
    server, _cell = make_server()
    server.allow_spawn()
    server.allow_despawn(lambda world, ctx, entity: Denied("programs are archived, not deleted"))
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync,
    ):
        entity = await sync.spawn(Program(name="keep"), timeout=UNIT)
        with pytest.raises(Forbidden, match="archived"):
            await sync.despawn(entity, timeout=UNIT)
        assert server.world.contains(entity)
