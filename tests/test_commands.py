"""The command layer without sockets: statuses, secure defaults, policies, control."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
from pydantic import BaseModel, Field

from pl3xus_rx.commands import Broadcast, Commands, Hold, Send, Start
from pl3xus_rx.protocol import FrameKind
from pl3xus_rx.sync import (
    Authorized,
    ComponentBuilder,
    ComponentRegistry,
    Denied,
    EntityControl,
    MutationContext,
    QueryBuilder,
    RequestBuilder,
    SyncEngine,
    SyncSettings,
)
from pl3xus_rx.world import World


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


class RobotQuery(BaseModel):
    robot: int


class RobotInfo(BaseModel):
    name: str


class Rig:
    """The command layer and a sync engine, driven by calls: effects are carried out here
    the way the server's shell does (frames into ``sent``, held replies into the engine,
    handlers into ``tasks``)."""

    def __init__(self, control_timeout: float | None = 300.0) -> None:
        self.world = World()
        self.registry = ComponentRegistry()
        self.registry.add(EntityControl)
        self.registry.add(Label)  # read-only (plain registration)
        self.registry.add(Pos)
        ComponentBuilder(self.registry, Speed).targeted().with_default_entity_policy().build()
        self.engine = SyncEngine(self.world, self.registry, SyncSettings(max_update_rate_hz=1000))
        self.sent: list[tuple[int, list[Any]]] = []
        self.broadcasts: list[list[Any]] = []
        self.now = 0.0
        self.tasks: list[Start] = []
        self.commands = Commands(
            self.world, self.registry, SyncSettings(control_timeout=control_timeout)
        )
        for conn in (1, 2):
            self.engine.add_client(conn)

    def apply(self, effects: list[Any]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self.sent.append((effect.connection, effect.frame))
            elif isinstance(effect, Hold):
                self.engine.defer(
                    effect.connection,
                    effect.frame,
                    component=effect.component,
                    entity=effect.entity,
                )
            elif isinstance(effect, Broadcast):
                self.broadcasts.append(effect.frame)
            else:
                self.tasks.append(effect)

    def handle_frame(self, conn: int, frame: list[Any]) -> None:
        self.apply(self.commands.handle(MutationContext(conn), frame, self.now))

    def tick(self, now: float) -> float | None:
        effects, due = self.commands.tick(now)
        self.apply(effects)
        return due

    def closed(self, conn: int) -> None:
        self.apply(self.commands.connection_closed(conn))

    def invalidate(self, query: type[BaseModel], keys: Any = None) -> None:
        self.apply(self.commands.invalidate(query, keys))

    def run_task(self, start: Start) -> None:
        async def run() -> Any:
            return await start.pending

        self.apply(self.commands.handler_finished(start.call, result=asyncio.run(run())))

    def do(self, conn: int, frame: list[Any]) -> list[Any]:
        """Send a command; flush; return the REPLY frame for it."""
        self.handle_frame(conn, frame)
        self.now += 1
        for c, data in self.engine.flush(self.now):
            self.sent.append((c, msgpack.unpackb(data, strict_map_key=False)))
        replies = [
            f for c, f in self.sent if c == conn and f[0] == FrameKind.REPLY and f[1] == frame[1]
        ]
        assert len(replies) == 1, self.sent
        return replies[0]


def test_mutation_statuses_and_secure_defaults() -> None:
    rig = Rig()
    robot = rig.world.spawn(Speed(value=1), Label(text="r1"))
    # read-only by default
    r = rig.do(1, [7, 1, "Label", robot, {"text": "hacked"}])
    assert r[2] == "forbidden" and "read-only" in r[3]
    # EntityControl is never client-writable
    r = rig.do(1, [7, 2, "EntityControl", robot, {"holder": 1}])
    assert r[2] == "forbidden" and "take/release" in r[3]
    # unknown type, unknown entity
    assert rig.do(1, [7, 3, "Nope", robot, {}])[2] == "not_found"
    assert rig.do(1, [7, 4, "Speed", 999, {"value": 1}])[2] == "not_found"
    # validation names the field
    r = rig.do(1, [7, 5, "Speed", robot, {"value": 50}])
    assert r[2] == "validation_error" and r[4]["errors"][0]["loc"] == "value"
    # the default policy: control needed
    r = rig.do(1, [7, 6, "Speed", robot, {"value": 2}])
    assert r[2] == "forbidden" and "does not control" in r[3]
    assert rig.world.get(robot, Speed) == Speed(value=1)
    assert rig.do(1, [9, 7, "take", robot])[2] == "ok"
    assert rig.do(1, [7, 8, "Speed", robot, {"value": 2}])[2] == "ok"
    assert rig.world.get(robot, Speed) == Speed(value=2)


def test_ok_reply_comes_after_the_update_frame() -> None:
    rig = Rig()
    robot = rig.world.spawn(Speed(value=1))
    rig.engine.handle_frame(1, True, [3, 1, "Speed", None, {}])
    rig.engine.flush(0.5)
    rig.do(1, [9, 1, "take", robot])
    rig.sent.clear()
    rig.handle_frame(1, [7, 2, "Speed", robot, {"value": 3}])
    assert rig.sent == []  # not before the flush
    rig.now += 1
    out = [msgpack.unpackb(d) for c, d in rig.engine.flush(rig.now)]
    assert [f[0] for f in out] == [5, 8]  # SYNC with the change, then the REPLY
    assert out[0][2][0][2] == [[robot, [3.0]]] and out[1][2] == "ok"


def test_a_malformed_command_frame_is_answered_with_an_errors_list() -> None:
    rig = Rig()
    reply = rig.do(1, [7, 5, "Label"])  # too short
    assert reply[:3] == [8, 5, "validation_error"]
    (error,) = reply[4]["errors"]
    assert error["type"] == "bad_frame" and "[7, req_id, type_name, entity, value]" in error["msg"]


def test_control_requested_notices_are_coalesced() -> None:
    rig = Rig()
    robot = rig.world.spawn(Speed(value=0))
    assert rig.do(1, [9, 1, "take", robot])[2] == "ok"

    def notices() -> int:
        return sum(1 for c, f in rig.sent if c == 1 and f[:2] == [10, "control_requested"])

    for req in range(2, 12):  # ten takes within the same second: one notice
        rig.handle_frame(2, [9, req, "take", robot])
    assert notices() == 1
    rig.now += 1.0
    rig.handle_frame(2, [9, 20, "take", robot])
    assert notices() == 2
    # every refused take is still answered
    assert sum(1 for c, f in rig.sent if c == 2 and f[0] == 8 and f[2] == "forbidden") == 11


def test_control_take_release_notify_hierarchy_disconnect() -> None:
    rig = Rig()
    cell = rig.world.spawn(Label(text="cell"))
    robot = rig.world.spawn(Speed(value=1), parent=cell)
    assert rig.do(1, [9, 1, "take", cell])[2] == "ok"
    # another client is refused, and the holder is told someone asked
    r = rig.do(2, [9, 2, "take", robot])
    assert r[2] == "forbidden" and "controlled by connection 1" in r[3]
    assert (1, [10, "control_requested", {"entity": cell, "by": 2}]) in rig.sent
    # control of the parent covers the child
    assert rig.do(1, [7, 3, "Speed", robot, {"value": 4}])[2] == "ok"
    assert rig.do(2, [7, 4, "Speed", robot, {"value": 5}])[2] == "forbidden"
    # only the holder may release
    assert rig.do(2, [9, 5, "release", cell])[2] == "forbidden"
    assert rig.do(1, [9, 6, "release", cell])[2] == "ok"
    assert rig.world.get(cell, EntityControl) == EntityControl(holder=None)
    # a child held by 2 blocks 1 from taking the parent
    assert rig.do(2, [9, 7, "take", robot])[2] == "ok"
    assert rig.do(1, [9, 8, "take", cell])[2] == "forbidden"
    # the holder disconnects: control is free
    rig.closed(2)
    assert rig.commands.holder(robot) is None
    assert rig.do(1, [9, 9, "take", cell])[2] == "ok"
    assert rig.do(1, [9, 10, "jump", cell])[2] == "validation_error"


def test_control_times_out_without_activity() -> None:
    rig = Rig(control_timeout=10)
    robot = rig.world.spawn(Speed(value=1))
    rig.do(1, [9, 1, "take", robot])  # now = 1
    rig.now = 8
    rig.do(1, [7, 2, "Speed", robot, {"value": 2}])  # authorized activity refreshes (t=8)
    assert rig.tick(15.0) == pytest.approx(18.0)
    assert rig.commands.holder(robot) == 1
    rig.tick(18.5)
    assert rig.commands.holder(robot) is None
    assert (1, [10, "control_released", {"entity": robot, "reason": "inactivity"}]) in rig.sent


def test_server_wide_authorizer_vetoes() -> None:
    rig = Rig()
    robot = rig.world.spawn(Speed(value=1))
    rig.do(1, [9, 1, "take", robot])
    rig.commands.authorizer = lambda w, ctx, e, v: (
        Denied("speed capped at 5") if v.value > 5 else Authorized()
    )
    r = rig.do(1, [7, 2, "Speed", robot, {"value": 6}])
    assert r[2] == "forbidden" and r[3] == "speed capped at 5"
    assert rig.do(1, [7, 3, "Speed", robot, {"value": 5}])[2] == "ok"


def test_handler_errors_are_internal_errors() -> None:
    rig = Rig()

    def broken(world: World, ctx: Any, entity: int, value: BaseModel) -> None:
        raise RuntimeError("driver offline")

    ComponentBuilder(rig.registry, Jog).with_handler(broken).build()
    robot = rig.world.spawn(Jog(dx=0))
    r = rig.do(1, [7, 1, "Jog", robot, {"dx": 1}])
    assert r[2] == "internal_error" and r[3] == "the handler for Jog failed"  # no internals


def test_requests_targeted_and_plain() -> None:
    rig = Rig()
    robot = rig.world.spawn(Pos(x=0))

    def jog(world: World, ctx: Any, entity: int, req: Jog) -> JogResult:
        with world.modify(entity, Pos) as pos:
            pos.x += req.dx
        return JogResult(x=world.get(entity, Pos).x)  # type: ignore[union-attr]

    RequestBuilder(rig.commands, Jog).targeted().with_default_entity_policy().register(jog)
    r = rig.do(2, [11, 1, "Jog", robot, {"dx": 1}])
    assert r[2] == "forbidden"  # a denied targeted request still gets an answer
    rig.do(1, [9, 2, "take", robot])
    r = rig.do(1, [11, 3, "Jog", robot, {"dx": 1.5}])
    assert r[2] == "ok" and r[4] == {"value": {"x": 1.5}}
    assert rig.do(1, [11, 4, "Jog", robot, {"dx": "far"}])[2] == "validation_error"
    assert rig.do(1, [11, 5, "Nope", robot, {}])[2] == "not_found"


def test_async_request_handler() -> None:
    rig = Rig()

    async def info(world: World, ctx: Any, q: RobotQuery) -> RobotInfo:
        await asyncio.sleep(0)
        return RobotInfo(name=f"robot {q.robot}")

    RequestBuilder(rig.commands, RobotQuery).register(info)
    rig.handle_frame(1, [11, 1, "RobotQuery", None, {"robot": 7}])
    assert len(rig.tasks) == 1
    rig.run_task(rig.tasks[0])
    rig.now += 1
    out = [msgpack.unpackb(d) for _, d in rig.engine.flush(rig.now)]
    assert out == [[8, 1, "ok", "", {"value": {"name": "robot 7"}}]]


def test_queries_and_invalidation() -> None:
    rig = Rig()
    calls = []

    def robot_info(world: World, q: RobotQuery) -> RobotInfo:
        calls.append(q.robot)
        return RobotInfo(name=f"r{q.robot}")

    QueryBuilder(rig.commands, RobotQuery).register(robot_info)
    r = rig.do(1, [12, 1, "RobotQuery", {"robot": 3}])
    assert r[2] == "ok" and r[4]["value"] == {"name": "r3"} and calls == [3]
    rig.invalidate(RobotQuery, [RobotQuery(robot=3)])
    rig.invalidate(RobotQuery)
    assert rig.broadcasts == [[13, "RobotQuery", [{"robot": 3}]], [13, "RobotQuery", None]]
    with pytest.raises(KeyError):
        rig.invalidate(Jog)
    tables = rig.commands.wire_tables()
    assert tables["queries"][0][0] == "RobotQuery"


def test_missing_response_type_is_a_clear_error() -> None:
    rig = Rig()
    with pytest.raises(TypeError, match=r"\.returns\(Model\)"):
        RequestBuilder(rig.commands, Jog).register(lambda w, c, r: None)


def test_malformed_command_frames() -> None:
    rig = Rig()
    from pl3xus_rx import FrameError

    with pytest.raises(FrameError, match="req_id"):
        rig.handle_frame(1, [7, "x"])
    r = rig.do(1, [7, 1, "Speed"])
    assert r[2] == "validation_error" and "expected" in r[3]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

actions = st.lists(
    st.tuples(
        st.sampled_from(["take", "release", "mutate", "disconnect", "wait"]),
        st.integers(1, 3),  # connection
        st.integers(0, 3),  # entity index: 0 cell, 1-2 robots in the cell, 3 a lone robot
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(actions)
def test_control_never_has_two_holders_and_mutations_are_authorized(
    program: list[tuple[str, int, int]],
) -> None:
    rig = Rig(control_timeout=5)
    world = rig.world
    cell = world.spawn(Label(text="cell"))
    ents = [
        cell,
        world.spawn(Speed(value=0), parent=cell),
        world.spawn(Speed(value=0), parent=cell),
        world.spawn(Speed(value=0)),
    ]
    applied: list[tuple[int, int, bool]] = []

    def holders_of(entity: int) -> set[int]:
        return {
            h
            for e in (entity, *world.ancestors(entity))
            if (h := rig.commands.holder(e)) is not None
        }

    acting = [0]  # the connection whose frame is being handled (handling is synchronous)
    world.changes(Speed).subscribe(
        lambda change: applied.append(
            (acting[0], change.entity, holders_of(change.entity) == {acting[0]})
        )
    )
    for req, (action, conn, index) in enumerate(program, start=1):
        acting[0] = conn
        entity = ents[index]
        if action == "take":
            rig.handle_frame(conn, [9, req, "take", entity])
        elif action == "release":
            rig.handle_frame(conn, [9, req, "release", entity])
        elif action == "mutate":
            rig.handle_frame(conn, [7, req, "Speed", entity, {"value": req % 10}])
        elif action == "disconnect":
            rig.closed(conn)
        else:
            rig.now += 3
            rig.tick(rig.now)
        # Invariant: along any path from an entity to the root there is at most one holder.
        for e in ents:
            assert len(holders_of(e)) <= 1, (e, holders_of(e))
    assert all(ok for _, _, ok in applied)


def test_a_mutation_can_invalidate_queries() -> None:
    rig = Rig()

    def robot_info(world: World, q: RobotQuery) -> RobotInfo:
        return RobotInfo(name="x")

    QueryBuilder(rig.commands, RobotQuery).register(robot_info)
    ComponentBuilder(rig.registry, Jog).with_handler(lambda w, c, e, v: w.insert(e, v)).invalidates(
        RobotQuery
    ).build()
    robot = rig.world.spawn(Jog(dx=0))
    assert rig.do(1, [7, 1, "Jog", robot, {"dx": 2}])[2] == "ok"
    assert rig.broadcasts == [[13, "RobotQuery", None]]
    assert rig.do(1, [7, 2, "Jog", robot, {"dx": "x"}])[2] == "validation_error"
    assert len(rig.broadcasts) == 1  # only on success


def test_one_way_messages_are_authorized_and_rejections_noticed() -> None:
    from pl3xus_rx.sync import MessageBuilder

    rig = Rig()
    robot = rig.world.spawn(Pos(x=0))
    got: list[tuple[int, float]] = []
    (
        MessageBuilder(rig.commands, Jog)
        .targeted()
        .with_default_entity_policy()
        .register(lambda w, ctx, e, m: got.append((e, m.dx)))
    )
    rig.handle_frame(2, [14, "Jog", robot, {"dx": 1}])
    assert got == []
    notice = rig.sent[-1]
    assert notice[0] == 2 and notice[1][:2] == [10, "message_rejected"]
    assert notice[1][2]["status"] == "forbidden" and notice[1][2]["type"] == "Jog"
    rig.do(1, [9, 1, "take", robot])
    sent_before = len(rig.sent)
    rig.handle_frame(1, [14, "Jog", robot, {"dx": 2}])
    assert got == [(robot, 2.0)] and len(rig.sent) == sent_before  # no answer on success
    rig.handle_frame(1, [14, "Jog", robot, {"dx": "x"}])
    assert rig.sent[-1][1][2]["status"] == "validation_error"
    rig.handle_frame(1, [14, "Nope", None, {}])
    assert rig.sent[-1][1][2]["status"] == "not_found"
    (row,) = rig.commands.wire_tables()["one_way"]
    assert row[0] == "Jog" and row[2] is True and len(row[1]) == 16
