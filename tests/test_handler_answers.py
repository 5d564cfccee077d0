"""Handlers and policies answer in their own words: raising Forbidden, NotFound or
InvalidValue gives that status and text; anything else is internal_error without internals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import wait_until
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import (
    Authorized,
    Forbidden,
    InvalidValue,
    NotFound,
    ServerError,
    SyncServer,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


class Door(BaseModel):
    open: bool


class Speed(BaseModel):
    value: float


class Setpoint(BaseModel):
    value: float


class Load(BaseModel):
    program: int


class Loaded(BaseModel):
    name: str


class Lookup(BaseModel):
    key: str


class Found(BaseModel):
    value: str


class Shout(BaseModel):
    text: str


REGISTRY = (
    ClientTypeRegistry.builder()
    .register(Speed)
    .register(Setpoint)
    .register(Door)
    .register_request(Load, Loaded)
    .register_query(Lookup, Found)
    .build()
)


def make_server() -> tuple[SyncServer, int]:
    server = SyncServer()

    def speed(world: Any, ctx: Any, entity: Any, value: Speed) -> None:
        if world.get(entity, Door).open:
            raise Forbidden("the door is open")
        if value.value > 2:
            raise InvalidValue("must stay below 2 m/s", field="value")
        world.insert(entity, value)

    def door_policy(world: Any, ctx: Any, entity: Any) -> Authorized:
        if world.get(entity, Door) is None:
            raise NotFound("this robot has no door")  # a policy answers in its words too
        return Authorized()

    server.sync_component_builder(Speed).with_entity_policy(door_policy).with_handler(speed).build()
    server.sync_component_builder(Setpoint).read_only("setpoints come from the PLC").build()
    server.sync_component(Door)

    async def load(world: Any, ctx: Any, request: Load) -> Loaded:
        await asyncio.sleep(0)
        if request.program == 7:
            raise NotFound("no program 7")
        if request.program < 0:
            raise InvalidValue("programs are numbered from 0", field="program")
        if request.program == 13:
            raise KeyError("secret internals")
        return Loaded(name=f"program {request.program}")

    def lookup(world: Any, query: Lookup) -> Found:
        if query.key == "nope":
            raise Forbidden("not for you")
        raise RuntimeError("a bug with internals in its message")

    def shout(world: Any, ctx: Any, message: Shout) -> None:
        raise Forbidden("quiet hours")

    server.request(Load).register(load)
    server.query(Lookup).register(lookup)
    server.message(Shout).register(shout)
    robot = server.world.spawn(Speed(value=0), Door(open=False), Setpoint(value=1))
    server.world.spawn(Speed(value=0))  # a robot without a door
    return server, int(robot)


async def test_handlers_and_policies_answer_with_their_own_status_and_words(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, robot = make_server()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as client,
    ):
        with pytest.raises(InvalidValue) as invalid:
            await client.mutate(robot, Speed(value=5))
        assert invalid.value.message == "must stay below 2 m/s"
        assert invalid.value.errors == [
            {"loc": "value", "msg": "must stay below 2 m/s", "type": "value_error"}
        ]
        with pytest.raises(NotFound, match="this robot has no door"):
            await client.mutate(robot + 1, Speed(value=1))
        server.world.insert(robot, Door(open=True))
        with pytest.raises(Forbidden, match="the door is open"):
            await client.mutate(robot, Speed(value=1))
        with pytest.raises(Forbidden, match="read-only for clients: setpoints come from the PLC"):
            await client.mutate(robot, Setpoint(value=2))
        # async request handlers too
        with pytest.raises(NotFound, match="no program 7"):
            await client.request(Load(program=7))
        with pytest.raises(InvalidValue) as invalid:
            await client.request(Load(program=-1))
        assert invalid.value.errors[0]["loc"] == "program"
        assert await client.request(Load(program=3)) == Loaded(name="program 3")
        # an unexpected exception: internal_error, and nothing of its internals on the wire
        with pytest.raises(ServerError) as failed:
            await client.request(Load(program=13))
        assert failed.value.message == "the handler for Load failed"
        assert "secret" not in str(failed.value) and "KeyError" not in str(failed.value)
        # queries
        refused = client.query(Lookup, Lookup(key="nope"))
        await wait_until(lambda: refused.get().status.value == "error")
        assert isinstance(refused.get().error, Forbidden)
        assert "not for you" in str(refused.get().error)
        broken = client.query(Lookup, Lookup(key="x"))
        await wait_until(lambda: broken.get().status.value == "error")
        assert isinstance(broken.get().error, ServerError)
        assert "internals" not in str(broken.get().error)
        # one-way messages: the notice carries the status and the words
        notices: list[Any] = []
        client.notices.subscribe(notices.append)
        client.send(Shout(text="hey"))
        await wait_until(lambda: notices)
        assert notices[0].detail["status"] == "forbidden"
        assert notices[0].detail["reason"] == "quiet hours"
    # refusals are not failures: no traceback in the log for them
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert {r.getMessage() for r in tracebacks} == {
        "handler for Load failed",
        "handler for Lookup failed",
    }
