"""The one gate, without sockets: every targeted command kind is decided there, hidden is
answered as missing, failing policies refuse, ``EntityControl`` follows its entity's
visibility, and (a property test) no frame names what its identity may not see."""

from __future__ import annotations

import os
import re
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from client_sync.store import ReplicaChangeKind, Store
from pl3xus_rx import Forbidden, Identity
from pl3xus_rx.commands import Broadcast, Commands, Hold, Send, Start
from pl3xus_rx.protocol import CLIENT_COMMAND_KINDS, FrameKind, NoticeKind
from pl3xus_rx.sync import (
    Authorized,
    ComponentBuilder,
    ComponentRegistry,
    EntityControl,
    MessageBuilder,
    MutationContext,
    RequestBuilder,
    SyncEngine,
    SyncSettings,
)
from pl3xus_rx.sync._access import sees_entity
from pl3xus_rx.world import EntityId, World


class Pos(BaseModel):
    x: float = 0


class Secret(BaseModel):
    code: int = 0


class Ping(BaseModel):
    n: int = 0


class Pong(BaseModel):
    n: int = 0


class Nudge(BaseModel):
    n: int = 0


IDENTITIES = {
    1: Identity.of("ann", "operator"),
    2: Identity.of("bob", "operator"),
    3: Identity.of("root", "admin"),
}
MISSING = 99_999


def allow(world: World, ctx: MutationContext, entity: EntityId) -> Authorized:
    return Authorized()


class Rig:
    """Pos is public, Secret visible by per-identity grants (admins see all); both writable
    without control. Ping is a targeted request, Nudge a targeted message; clients may
    spawn and despawn. Effects are carried out as the server's shell does."""

    def __init__(self) -> None:
        self.world = World()
        self.registry = ComponentRegistry()
        self.registry.add(EntityControl)
        self.grants: dict[str, set[int]] = {"ann": set(), "bob": set()}
        ComponentBuilder(self.registry, Pos).with_entity_policy(allow).build()
        (
            ComponentBuilder(self.registry, Secret)
            .with_entity_policy(allow)
            .visible_to(self.rule)
            .build()
        )
        self.engine = SyncEngine(self.world, self.registry, SyncSettings(max_update_rate_hz=1000))
        self.commands = Commands(self.world, self.registry, SyncSettings(control_timeout=30))
        self.commands.allow_spawn()
        self.commands.allow_despawn(allow)  # not the ownership default: server entities too
        RequestBuilder(self.commands, Ping).targeted().returns(Pong).register(
            lambda world, ctx, entity, ping: Pong(n=ping.n)
        )
        MessageBuilder(self.commands, Nudge).targeted().register(lambda w, c, e, m: None)
        self.now = 0.0
        self.req = 0
        self.asked: set[int] = set()  # ids the command being handled names itself
        self.stores: dict[int, Store] = {}
        self.frames: dict[int, list[list[Any]]] = {cid: [] for cid in IDENTITIES}
        for cid, identity in IDENTITIES.items():
            self.engine.add_client(cid, identity=identity)
            self.stores[cid] = Store(self.registry.wire_table())
            for sub, model in enumerate((Pos, Secret, EntityControl), start=1):
                self.stores[cid].add_subscription(sub, model.__name__, model, None)
                self.engine.handle_frame(
                    cid, True, [FrameKind.SUBSCRIBE, sub, model.__name__, None, {}]
                )

    def rule(self, world: World, identity: Identity, entity: EntityId) -> bool:
        return identity.has_role("admin") or entity in self.grants.get(identity.name, set())

    def sees(self, cid: int, entity: int) -> bool:
        return sees_entity(self.world, self.registry, IDENTITIES[cid], EntityId(entity))

    # ------------------------------------------------------------------ driving

    def apply(self, effects: list[Any]) -> list[list[Any]]:
        """Carry out effects; returns the frames sent at once, as (connection, frame)."""
        now: list[list[Any]] = []
        for effect in effects:
            if isinstance(effect, Send):
                self.receive(effect.connection, effect.frame)
                now.append([effect.connection, effect.frame])
            elif isinstance(effect, Hold):
                self.engine.defer(
                    effect.connection,
                    effect.frame,
                    component=effect.component,
                    entity=effect.entity,
                )
            elif isinstance(effect, Broadcast):
                for cid in IDENTITIES:
                    self.receive(cid, effect.frame)
            else:
                assert not isinstance(effect, Start)  # every handler here is synchronous
        return now

    def handle(self, cid: int, frame: list[Any]) -> list[list[Any]]:
        return self.apply(
            self.commands.handle(MutationContext(cid, IDENTITIES[cid]), frame, self.now)
        )

    def command(self, cid: int, kind: FrameKind, *args: Any) -> list[Any]:
        """Send a command and flush; the REPLY (or for SEND the notice, or None)."""
        self.req += 1
        self.asked = {a for a in args if type(a) is int}
        frame = [kind, *args] if kind == FrameKind.SEND else [kind, self.req, *args]
        sent = self.handle(cid, frame)
        self.flush()
        for frame in reversed(self.frames[cid]):
            if frame[0] == FrameKind.REPLY and frame[1] == self.req:
                return frame
        if kind == FrameKind.SEND:  # its rejection, if any, went out at once
            notices = [f for c, f in sent if c == cid and f[0] == FrameKind.NOTICE]
            return notices[-1] if notices else None  # type: ignore[return-value]
        raise AssertionError(f"no reply to {frame}")

    def receive(self, cid: int, frame: list[Any]) -> None:
        """Every frame a client gets passes the invariant: nothing it may not see."""
        self.frames[cid].append(frame)
        if frame[0] == FrameKind.NOTICE:
            kind, body = frame[1], frame[2]
            if kind == NoticeKind.CONTROL_REQUESTED:
                assert self.sees(cid, body["entity"]), (cid, frame)
            elif kind == NoticeKind.CONTROL_RELEASED:
                assert body["reason"] == "not_visible" or self.sees(cid, body["entity"]), frame
        elif frame[0] == FrameKind.REPLY:
            for named in re.findall(r"entity (\d+)", frame[3]):
                assert self.sees(cid, int(named)) or int(named) in self.asked, (cid, frame)

    def flush(self) -> None:
        self.now += 1
        for cid, data in self.engine.flush(self.now):
            frame = msgpack.unpackb(data, strict_map_key=False)
            if frame[0] != FrameKind.SYNC:
                self.receive(cid, frame)
                continue
            self.frames[cid].append(frame)
            for change in self.stores[cid].apply(frame):
                if change.kind in (ReplicaChangeKind.INSERTED, ReplicaChangeKind.UPDATED):
                    assert self.sees(cid, change.entity), (cid, change)
                    if isinstance(change.value, Secret):
                        assert self.rule(self.world, IDENTITIES[cid], EntityId(change.entity))
        effects, _ = self.commands.tick(self.now)
        self.apply(effects)


def normal(frame: list[Any] | None, raw: int) -> Any:
    """A reply or notice with the asked-about id replaced, and the request id dropped."""
    if frame is None:
        return None
    text = repr(frame[2:] if frame[0] == FrameKind.REPLY else frame[1:])
    return re.sub(rf"\b({raw}|{MISSING})\b", "<id>", text)


# ---------------------------------------------------------------------- unit cases


def test_every_client_command_kind_is_decided_by_the_gate_and_hidden_is_missing() -> None:
    cases: dict[FrameKind, tuple[Any, ...]] = {
        FrameKind.MUTATE: ("Pos", "{e}", {"x": 1}),
        FrameKind.CONTROL: ("take", "{e}"),
        FrameKind.REQUEST: ("Ping", "{e}", {"n": 1}),
        FrameKind.SEND: ("Nudge", "{e}", {"n": 1}),
        FrameKind.SPAWN: ("{e}", {"Pos": {"x": 0}}),
        FrameKind.DESPAWN: ("{e}",),
    }
    assert set(cases) | {FrameKind.QUERY} == set(CLIENT_COMMAND_KINDS)  # (QUERY: no target)
    for kind, shape in cases.items():
        rig = Rig()
        hidden = rig.world.spawn(Secret(code=1))
        seen = rig.world.spawn(Pos())
        rig.flush()
        gate = rig.commands.gate

        def args(e: int, shape: tuple[Any, ...] = shape) -> list[Any]:
            return [e if a == "{e}" else a for a in shape]

        missing = rig.command(1, kind, *args(MISSING))
        refused = rig.command(1, kind, *args(hidden))
        assert gate.decisions[kind] == 2, kind
        assert normal(refused, hidden) == normal(missing, MISSING), kind
        status = refused[2]["status"] if kind == FrameKind.SEND else refused[2]
        assert status == "not_found", (kind, refused)
        assert rig.world.get(hidden, Secret) == Secret(code=1)
        # who sees it passes the gate's visibility step with the same command
        if kind != FrameKind.SEND:
            assert rig.command(3, kind, *args(hidden))[2] == "ok", kind
            assert rig.command(1, kind, *args(seen))[2] == "ok", kind
            assert gate.decisions[kind] == 4, kind


def test_a_mutate_needs_the_component_visible_for_the_entity_too() -> None:
    rig = Rig()
    public = rig.world.spawn(Pos())  # visible, but Secret of it is not (no grant)
    rig.flush()
    missing = rig.command(1, FrameKind.MUTATE, "Secret", MISSING, {"code": 3})
    refused = rig.command(1, FrameKind.MUTATE, "Secret", public, {"code": 3})
    assert normal(refused, public) == normal(missing, MISSING)
    assert rig.world.get(public, Secret) is None  # never a write without read access
    rig.grants["ann"].add(public)
    assert rig.command(1, FrameKind.MUTATE, "Secret", public, {"code": 3})[2] == "ok"
    assert rig.world.get(public, Secret) == Secret(code=3)


def test_a_released_control_never_makes_an_entity_visible() -> None:
    rig = Rig()
    hidden = rig.world.spawn(Secret())
    rig.grants["bob"].add(hidden)
    assert rig.command(2, FrameKind.CONTROL, "take", hidden)[2] == "ok"
    assert rig.command(2, FrameKind.CONTROL, "release", hidden)[2] == "ok"
    assert rig.world.get(hidden, EntityControl) == EntityControl(holder=None)
    assert not rig.sees(1, hidden)
    assert hidden not in rig.stores[1].view(3)  # ann's EntityControl subscription
    assert hidden in rig.stores[2].view(3)
    assert rig.command(1, FrameKind.CONTROL, "take", hidden)[2] == "not_found"


def test_control_on_a_hidden_relative_blocks_without_naming_it() -> None:
    rig = Rig()
    parent = rig.world.spawn(Secret())
    child = rig.world.spawn(Pos(), parent=parent)
    rig.grants["bob"].add(parent)
    assert rig.command(2, FrameKind.CONTROL, "take", parent)[2] == "ok"
    for kind, args in (
        (FrameKind.CONTROL, ("take", child)),
        (FrameKind.DESPAWN, (child,)),
        (FrameKind.SPAWN, (child, {"Pos": {}})),
    ):
        reply = rig.command(1, kind, *args)
        assert reply[2] == "forbidden", reply
        assert str(parent) not in reply[3] and "bob" not in reply[3], reply
        assert "another party" in reply[3]
    # bob, who sees it, is told who asked about his entity, and the text names the holder
    # to those who see it
    rig.grants["ann"].add(parent)
    reply = rig.command(1, FrameKind.CONTROL, "take", child)
    assert f"entity {parent} is controlled by 'bob'" == reply[3]


def test_despawn_with_hidden_descendants_is_refused() -> None:
    rig = Rig()
    top = rig.world.spawn(Pos())
    below = rig.world.spawn(Secret(), parent=top)
    rig.world.spawn(parent=top)  # the server's own bookkeeping: no synced component
    reply = rig.command(1, FrameKind.DESPAWN, top)
    assert reply[2] == "forbidden" and "descendants" in reply[3] and str(below) not in reply[3]
    assert rig.world.contains(below)
    rig.grants["ann"].add(below)
    assert rig.command(1, FrameKind.DESPAWN, top)[2] == "ok"
    assert not rig.world.contains(below)


def test_failing_policies_and_rules_refuse_and_are_counted() -> None:
    rig = Rig()
    robot = rig.world.spawn(Pos())

    def broken(*args: Any) -> Any:
        raise RuntimeError("policy bug")

    def chosen(*args: Any) -> Any:
        raise Forbidden("no program loaded")

    rig.commands.gate.control_policy = broken
    reply = rig.command(1, FrameKind.CONTROL, "take", robot)
    assert reply[2:4] == ["forbidden", "not authorized"]
    assert rig.commands.faults.count == {"the control policy": 1}
    rig.commands.gate.control_policy = chosen  # a documented answer keeps its text
    assert rig.command(1, FrameKind.CONTROL, "take", robot)[2:4] == [
        "forbidden",
        "no program loaded",
    ]
    rig.commands.authorizer = broken
    assert rig.command(1, FrameKind.MUTATE, "Pos", robot, {"x": 1})[2:4] == [
        "forbidden",
        "not authorized",
    ]
    assert rig.world.get(robot, Pos) == Pos()


def test_a_raising_visibility_rule_hides(caplog: pytest.LogCaptureFixture) -> None:
    world, registry = World(), ComponentRegistry()
    registry.add(EntityControl)

    def rule(world: World, identity: Identity, entity: EntityId) -> bool:
        raise KeyError("no such site")

    ComponentBuilder(registry, Secret).visible_to(rule).build()
    engine = SyncEngine(world, registry, SyncSettings(max_update_rate_hz=1000))
    engine.add_client(1, identity=IDENTITIES[1])
    engine.handle_frame(1, True, [FrameKind.SUBSCRIBE, 1, "Secret", None, {}])
    world.spawn(Secret(code=1))
    frames = [msgpack.unpackb(d) for _, d in engine.flush(1.0)]
    assert frames == [[FrameKind.SYNC, 1, [[1, 3, [], [], []]]]]  # complete and empty
    world.insert(EntityId(1), Secret(code=2))
    engine.flush(2.0)
    logged = [r for r in caplog.records if "visible_to of Secret" in r.getMessage()]
    assert len(logged) == 1  # once a minute, not once per evaluation


def test_losing_sight_of_a_held_entity_ends_control() -> None:
    rig = Rig()
    robot = rig.world.spawn(Secret())
    rig.grants["ann"].add(robot)
    assert rig.command(1, FrameKind.CONTROL, "take", robot)[2] == "ok"
    rig.flush()
    assert rig.stores[1].view(3)[robot] == EntityControl(holder=1, by="ann")
    rig.grants["ann"].discard(robot)
    rig.engine.visibility_changed(Secret)
    rig.flush()
    assert [
        FrameKind.NOTICE,
        NoticeKind.CONTROL_RELEASED,
        {"entity": robot, "reason": "not_visible"},
    ] in [f[:3] for f in rig.frames[1]]
    assert rig.commands.holder(robot) is None
    rig.flush()
    assert robot not in rig.stores[1].view(3)  # its control went as a removal
    assert rig.world.get(robot, EntityControl) == EntityControl(holder=None)


# ---------------------------------------------------------------------- the property

entity_specs = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.integers(0, 5)),  # Pos?, Secret?, parent
    min_size=3,
    max_size=7,
)
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("grant"), st.sampled_from(["ann", "bob"]), st.integers(0, 9), st.booleans()
        ),
        st.tuples(st.just("take"), st.integers(1, 3), st.integers(0, 9)),
        st.tuples(st.just("release"), st.integers(1, 3), st.integers(0, 9)),
        st.tuples(
            st.just("mutate"),
            st.integers(1, 3),
            st.integers(0, 9),
            st.sampled_from(["Pos", "Secret"]),
        ),
        st.tuples(st.just("request"), st.integers(1, 3), st.integers(0, 9)),
        st.tuples(st.just("send"), st.integers(1, 3), st.integers(0, 9)),
        st.tuples(
            st.just("spawn"),
            st.integers(1, 3),
            st.integers(0, 9),
            st.sampled_from(["Pos", "Secret"]),
        ),
        st.tuples(st.just("despawn"), st.integers(1, 3), st.integers(0, 9)),
        st.tuples(
            st.just("server"),
            st.integers(0, 9),
            st.sampled_from(["+Pos", "-Pos", "+Secret", "-Secret"]),
        ),
        st.tuples(st.just("flush")),
    ),
    max_size=40,
)


@settings(max_examples=int(os.environ.get("PL3XUS_PROPERTY_EXAMPLES", "150")), deadline=None)
@given(entity_specs, ops)
def test_hidden_is_missing_and_nothing_unseen_is_ever_named(
    specs: list[tuple[bool, bool, int]], program: list[Any]
) -> None:
    """Random grants, hierarchies, control, spawn/despawn and commands: every answer about
    a hidden target equals the answer about a missing one, and no frame an identity gets
    names an entity (or its holder) it may not see, but for the removal and the
    ``not_visible`` notice of one it saw until then."""
    rig = Rig()
    entities: list[EntityId] = []
    for index, (pos, secret, parent) in enumerate(specs):
        comps: list[BaseModel] = ([Pos()] if pos else []) + ([Secret()] if secret else [])
        above = entities[parent] if index and parent < index else None
        entities.append(rig.world.spawn(*comps, parent=above))
    rig.flush()

    def target(i: int) -> int:
        return entities[i] if i < len(entities) else MISSING

    for op in program:
        kind = op[0]
        if kind == "grant":
            _, name, i, on = op
            if i < len(entities):
                (rig.grants[name].add if on else rig.grants[name].discard)(entities[i])
                rig.engine.visibility_changed(Secret)
            continue
        if kind == "server":
            _, i, change = op
            e = target(i)
            if rig.world.contains(EntityId(e)):
                model = Pos if change.endswith("Pos") else Secret
                if change[0] == "+":
                    rig.world.insert(EntityId(e), model())
                else:
                    rig.world.remove(EntityId(e), model)
            continue
        if kind == "flush":
            rig.flush()
            continue
        cid, e = op[1], target(op[2])
        frame_kind, args = {
            "take": (FrameKind.CONTROL, ("take", e)),
            "release": (FrameKind.CONTROL, ("release", e)),
            "mutate": (FrameKind.MUTATE, (op[3] if len(op) > 3 else "Pos", e, {})),
            "request": (FrameKind.REQUEST, ("Ping", e, {"n": 1})),
            "send": (FrameKind.SEND, ("Nudge", e, {"n": 1})),
            "spawn": (FrameKind.SPAWN, (e, {op[3] if len(op) > 3 else "Pos": {}})),
            "despawn": (FrameKind.DESPAWN, (e,)),
        }[kind]
        hidden = not rig.sees(cid, e)
        if hidden:
            missing_args = tuple(MISSING if a == e else a for a in args)
            answer_missing = rig.command(cid, frame_kind, *missing_args)
            answer = rig.command(cid, frame_kind, *args)
            assert normal(answer, e) == normal(answer_missing, MISSING), (op, answer)
        else:
            answer = rig.command(cid, frame_kind, *args)
            if kind == "spawn" and answer[2] == "ok":
                entities.append(EntityId(answer[4]["entity"]))
    # the end state: each identity's replica holds exactly what it may see
    rig.engine.visibility_changed()
    for _ in range(3):
        rig.flush()
    for cid in IDENTITIES:
        for sub, model in enumerate((Pos, Secret, EntityControl), start=1):
            expected = {
                e
                for e, _ in rig.world.query(model)
                if rig.sees(cid, e)
                and (model is not Secret or rig.rule(rig.world, IDENTITIES[cid], e))
            }
            assert set(rig.stores[cid].view(sub)) == expected, (cid, model.__name__)
    # and nobody holds control of what it cannot see
    for entity in rig.commands.control.held():
        for sharer in rig.commands.control.sharers(entity):
            assert rig.sees(sharer, entity)


def test_a_client_never_spawns_what_it_may_not_see() -> None:
    rig = Rig()
    reply = rig.command(1, FrameKind.SPAWN, None, {"Secret": {"code": 1}})
    assert reply[2] == "forbidden" and "Secret" in reply[3]
    assert rig.world.count(Secret) == 0
    reply = rig.command(3, FrameKind.SPAWN, None, {"Secret": {"code": 1}})  # the admin may
    assert reply[2] == "ok" and rig.world.count(Secret) == 1


def test_a_takeover_never_displaces_control_it_cannot_see() -> None:
    rig = Rig()
    rig.commands.gate.takeover_roles = frozenset({"operator"})
    parent = rig.world.spawn(Pos())
    child = rig.world.spawn(Secret(), parent=parent)
    rig.grants["bob"].add(child)
    assert rig.command(2, FrameKind.CONTROL, "take", child)[2] == "ok"
    reply = rig.command(1, FrameKind.CONTROL, "take", parent)  # ann may take over, not this
    assert reply[2] == "forbidden" and str(child) not in reply[3] and "bob" not in reply[3]
    assert rig.commands.holder(child) == 2
    rig.grants["ann"].add(child)  # once she sees it, her role takes it over
    assert rig.command(1, FrameKind.CONTROL, "take", parent)[2] == "ok"
    assert rig.commands.holder(child) is None


def test_the_gate_decides_with_the_live_rule_not_with_what_was_sent() -> None:
    rig = Rig()
    robot = rig.world.spawn(Secret())
    rig.grants["ann"].add(robot)
    rig.flush()
    assert robot in rig.stores[1].view(2)  # ann holds its value
    rig.grants["ann"].discard(robot)  # no visibility_changed, no flush: nothing sent yet
    reply = rig.command(1, FrameKind.MUTATE, "Secret", robot, {"code": 5})
    assert reply[2:4] == ["not_found", f"entity {robot} does not exist"]
    assert rig.world.get(robot, Secret) == Secret()
    rig.grants["ann"].add(robot)  # and the other way: granted, not yet sent, already usable
    rig.grants["bob"].add(robot)
    assert rig.command(2, FrameKind.MUTATE, "Secret", robot, {"code": 6})[2] == "ok"


def test_a_one_entity_subscription_of_a_hidden_entity_is_one_of_a_missing_entity() -> None:
    rig = Rig()
    hidden = rig.world.spawn(Secret())
    rig.commands.handle(
        MutationContext(3, IDENTITIES[3]), [FrameKind.CONTROL, 1, "take", hidden], 0
    )
    rig.flush()
    answers = {}
    for sub, entity in ((10, hidden), (20, MISSING)):
        for offset, name in enumerate(("Secret", "EntityControl")):
            rig.engine.handle_frame(1, True, [FrameKind.SUBSCRIBE, sub + offset, name, entity, {}])
    rig.now += 1
    (data,) = [d for c, d in rig.engine.flush(rig.now) if c == 1]
    for group in msgpack.unpackb(data, strict_map_key=False)[2]:
        answers[group[0]] = group[1:]
    assert answers[10] == answers[20] == [3, [], [], []]  # empty and complete, both
    assert answers[11] == answers[21] == [3, [], [], []]


def test_a_failing_policy_is_asked_once() -> None:
    rig = Rig()
    robot = rig.world.spawn(Pos())
    calls: list[int] = []

    def broken(*args: Any) -> Any:
        calls.append(1)
        raise RuntimeError("policy bug")

    reg = rig.registry.get(Pos)
    object.__setattr__(reg, "entity_policy", broken)
    reply = rig.command(1, FrameKind.MUTATE, "Pos", robot, {"x": 1})
    assert reply[2:4] == ["forbidden", "not authorized"]
    assert calls == [1]  # (a side-effecting policy must not run twice)
    assert rig.commands.faults.count == {"the entity policy of Pos": 1}
