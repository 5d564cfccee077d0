"""The sync engine without sockets: frames out of flushes, replayed into a client Store."""

from __future__ import annotations

import datetime
import enum
import json
import math
import os
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, computed_field

from client_sync.store import SequenceGap, Store
from pl3xus_rx.sync import (
    ComponentRegistry,
    EntityControl,
    SubscriptionError,
    SyncEngine,
    SyncSettings,
    UnknownComponent,
)
from pl3xus_rx.world import World


class Position(BaseModel):
    x: float
    y: float


class Status(BaseModel):
    text: str


class Secret(BaseModel):
    key: str


class Rig:
    """A world, an engine, and clients that decode what the engine sends them."""

    def __init__(self, rate: float = 1000.0, deltas: bool = False, chunk: int = 20_000) -> None:
        self.world = World()
        self.registry = ComponentRegistry()
        self.registry.add(Position, field_deltas=deltas)
        self.registry.add(Status, max_update_rate_hz=10)
        settings = SyncSettings(max_update_rate_hz=rate, max_snapshot_items=chunk)
        self.engine = SyncEngine(self.world, self.registry, settings)
        self.now = 0.0
        self.stores: dict[int, Store] = {}
        self.frames: dict[int, list[Any]] = {}

    def client(self, cid: int, binary: bool = True) -> Store:
        self.engine.add_client(cid, binary=binary)
        self.stores[cid] = Store(self.registry.wire_table())
        self.frames[cid] = []
        return self.stores[cid]

    def subscribe(
        self, cid: int, sub: int, model: type[BaseModel], entity: int | None = None, **options: Any
    ) -> None:
        self.stores[cid].add_subscription(sub, model.__name__, model, entity)
        self.engine.handle_frame(cid, True, [3, sub, model.__name__, entity, options])

    def flush(self, dt: float = 1.0) -> dict[int, list[Any]]:
        self.now += dt
        out: dict[int, list[Any]] = {}
        for cid, data in self.engine.flush(self.now):
            frame = (
                msgpack.unpackb(data, strict_map_key=False)
                if isinstance(data, bytes)
                else __import__("json").loads(data)
            )
            out[cid] = frame
            self.frames[cid].append(frame)
            self.stores[cid].apply(frame)
        return out


def test_snapshot_then_changes_in_order() -> None:
    rig = Rig()
    a = rig.world.spawn(Position(x=1, y=1))
    b = rig.world.spawn(Position(x=2, y=2), Status(text="idle"))
    store = rig.client(1)
    rig.subscribe(1, 10, Position)
    frame = rig.flush()[1]
    assert frame[0] == 5 and frame[1] == 1
    (group,) = frame[2]
    assert group[0] == 10 and group[1] == 3  # snapshot + complete
    assert sorted(e for e, _ in group[2]) == [a, b]
    assert store.complete(10) and store.view(10) == {a: Position(x=1, y=1), b: Position(x=2, y=2)}
    rig.world.insert(a, Position(x=5, y=5))
    frame = rig.flush()[1]
    assert frame[1] == 2 and frame[2] == [[10, 0, [[a, [5.0, 5.0]]], [], []]]
    assert store.view(10)[a] == Position(x=5, y=5)
    assert rig.flush() == {}  # nothing changed: nothing sent


def test_conflation_keeps_latest_and_never_loses_a_removal() -> None:
    rig = Rig()
    e = rig.world.spawn(Position(x=0, y=0))
    store = rig.client(1)
    rig.subscribe(1, 1, Position)
    rig.flush()
    for i in range(100):
        rig.world.insert(e, Position(x=i, y=i))
    frame = rig.flush()[1]
    assert frame[2] == [[1, 0, [[e, [99.0, 99.0]]], [], []]]  # one item, the latest
    # remove then insert in one flush: both reach the client, in order
    rig.world.remove(e, Position)
    rig.world.insert(e, Position(x=7, y=7))
    frame = rig.flush()[1]
    assert frame[2] == [[1, 0, [[e, [7.0, 7.0]]], [e], []]]
    assert store.view(1)[e] == Position(x=7, y=7)
    # insert then remove in one flush: the removal is sent
    f = rig.world.spawn(Position(x=1, y=1))
    rig.world.remove(f, Position)
    assert rig.flush()[1][2] == [[1, 0, [], [f], []]]


def test_component_removed_is_not_entity_despawned() -> None:
    rig = Rig()
    e = rig.world.spawn(Position(x=0, y=0), Status(text="ok"))
    child = rig.world.spawn(Status(text="child"), parent=e)
    rig.client(1)
    rig.subscribe(1, 1, Position)
    rig.subscribe(1, 2, Status)
    rig.flush()
    rig.world.remove(e, Status)
    rig.flush(dt=1)
    assert rig.frames[1][-1][2] == [[2, 0, [], [e], []]]  # removal, not despawn
    assert e in rig.stores[1].view(1)  # the Position view is untouched
    rig.world.despawn(e)  # children go too
    frame = rig.flush()[1]
    groups = {g[0]: g for g in frame[2]}
    assert groups[1][4] == [e] and groups[2][4] == [child]
    assert rig.stores[1].view(1) == {} and rig.stores[1].view(2) == {}


def test_one_entity_subscription_and_unsubscribe_stops_at_once() -> None:
    rig = Rig()
    a = rig.world.spawn(Position(x=0, y=0))
    b = rig.world.spawn(Position(x=1, y=1))
    store = rig.client(1)
    rig.subscribe(1, 5, Position, entity=b)
    rig.flush()
    assert list(store.view(5)) == [b]
    rig.world.insert(a, Position(x=9, y=9))
    assert rig.flush() == {}
    rig.world.insert(b, Position(x=9, y=9))
    rig.engine.handle_frame(1, True, [4, 5])
    assert rig.flush() == {}


def test_encodings_do_not_depend_on_subscriber_count() -> None:
    counts = []
    for clients in (1, 100):
        rig = Rig()
        ents = [rig.world.spawn(Position(x=i, y=i)) for i in range(50)]
        for cid in range(clients):
            rig.client(cid)
            rig.subscribe(cid, 1, Position)
        rig.flush()
        before = rig.engine.statistics().item_encodings
        for e in ents:
            rig.world.insert(e, Position(x=-1, y=-1))
        frames = rig.flush()
        assert len(frames) == clients  # one frame per connection
        counts.append(rig.engine.statistics().item_encodings - before)
    assert counts == [50, 50]


def test_json_clients_get_the_same_frames() -> None:
    rig = Rig()
    e = rig.world.spawn(Position(x=1.5, y=2))
    rig.client(1, binary=True)
    rig.client(2, binary=False)
    rig.subscribe(1, 1, Position)
    rig.subscribe(2, 1, Position)
    out = rig.flush()
    assert out[1] == out[2]
    assert rig.stores[2].view(1) == {e: Position(x=1.5, y=2)}


def test_unknown_type_error_lists_registered_types() -> None:
    rig = Rig()
    rig.client(1)
    with pytest.raises(UnknownComponent) as info:
        rig.engine.handle_frame(1, True, [3, 7, "Secret", None, {}])
    body = info.value.to_wire()
    assert body["code"] == "unknown_component" and body["subscription"] == 7
    assert "Position, Status" in body["message"] and body["type"] == "Secret"
    with pytest.raises(SubscriptionError, match="deadband"):
        rig.engine.handle_frame(1, True, [3, 8, "Position", None, {"deadband": "big"}])
    with pytest.raises(SubscriptionError, match="unknown subscription options"):
        rig.engine.handle_frame(1, True, [3, 8, "Position", None, {"speed": 1}])
    for bad in ({"max_rate_hz": math.nan}, {"deadband": math.inf}, {"max_rate_hz": -1}):
        with pytest.raises(SubscriptionError, match="positive finite number") as err:
            rig.engine.handle_frame(1, True, [3, 8, "Position", None, bad])
        assert err.value.field == next(iter(bad))


def test_unsynced_types_never_leave_the_server() -> None:
    rig = Rig()
    e = rig.world.spawn(Position(x=0, y=0), Secret(key="hunter2"))
    rig.client(1)
    rig.subscribe(1, 1, Position)
    rig.flush()
    rig.world.insert(e, Secret(key="changed"))
    assert rig.flush() == {}
    assert b"hunter2" not in msgpack.packb(rig.frames[1])


def test_per_type_rate_cap() -> None:
    rig = Rig(rate=1000)
    e = rig.world.spawn(Status(text="a"))
    rig.client(1)
    rig.subscribe(1, 1, Status)
    rig.flush(dt=0.001)
    rig.world.insert(e, Status(text="b"))
    assert rig.flush(dt=0.001)[1][2][0][2] == [[e, ["b"]]]
    rig.world.insert(e, Status(text="c"))
    assert rig.flush(dt=0.01) == {}  # Status is capped at 10 Hz
    assert rig.engine.next_flush_delay(rig.now) == pytest.approx(0.09, abs=1e-6)
    assert rig.flush(dt=0.09)[1][2][0][2] == [[e, ["c"]]]


def test_subscription_rate_and_deadband() -> None:
    rig = Rig()
    e = rig.world.spawn(Position(x=0, y=0))
    rig.client(1)
    rig.subscribe(1, 1, Position, deadband=0.5)
    rig.subscribe(1, 2, Position, max_rate_hz=1)
    rig.flush(dt=0.01)
    rig.world.insert(e, Position(x=0.2, y=0))  # within the deadband
    out = rig.flush(dt=0.01)
    assert out == {}
    assert rig.engine.statistics().deadband_suppressed == 1
    rig.world.insert(e, Position(x=0.6, y=0))  # 0.6 from the last sent value: sent
    out = rig.flush(dt=0.01)
    assert [g[0] for g in out[1][2]] == [1]  # sub 2 waits for its 1 Hz slot
    out = rig.flush(dt=1.0)
    assert out[1][2] == [[2, 0, [[e, [0.6, 0.0]]], [], []]]
    assert rig.stores[1].view(2)[e] == Position(x=0.6, y=0)


def test_sequence_gap_is_detected_and_resync_sends_a_fresh_snapshot() -> None:
    rig = Rig()
    e = rig.world.spawn(Position(x=0, y=0))
    rig.client(1)
    rig.subscribe(1, 1, Position)
    rig.flush()
    rig.world.insert(e, Position(x=1, y=1))
    rig.now += 1
    lost = rig.engine.flush(rig.now)  # this frame is "dropped"
    assert lost
    rig.world.insert(e, Position(x=1, y=2))
    rig.now += 1
    ((_, data),) = rig.engine.flush(rig.now)
    with pytest.raises(SequenceGap):
        rig.stores[1].apply(msgpack.unpackb(data))
    rig.engine.handle_frame(1, True, [6, None])
    frame = rig.flush()[1]
    assert frame[2][0][1] == 3 and rig.stores[1].view(1)[e] == Position(x=1, y=2)


def test_entity_control_is_never_client_writable() -> None:
    registry = ComponentRegistry()
    reg = registry.add(EntityControl, read_only=False)
    assert reg.read_only and not reg.mutable


def test_builder_is_secure_by_default() -> None:
    from pl3xus_rx.sync import ComponentBuilder

    registry = ComponentRegistry()
    plain = ComponentBuilder(registry, Position).targeted().build()
    assert plain.read_only and plain.targeted
    editable = ComponentBuilder(registry, Status).with_default_entity_policy().build()
    assert editable.mutable and editable.entity_policy is not None
    ro = ComponentBuilder(registry, Secret).with_handler(lambda *a: None).read_only().build()
    assert ro.read_only


ops = st.lists(
    st.one_of(
        st.tuples(st.just("spawn"), st.floats(-10, 10), st.booleans()),
        st.tuples(st.just("insert"), st.integers(0, 9), st.floats(-10, 10)),
        st.tuples(st.just("status"), st.integers(0, 9), st.sampled_from(["a", "b", "c"])),
        st.tuples(st.just("remove"), st.integers(0, 9), st.sampled_from([Position, Status])),
        st.tuples(st.just("despawn"), st.integers(0, 9)),
        st.tuples(
            st.just("subscribe"),
            st.integers(0, 3),
            st.sampled_from([Position, Status]),
            st.one_of(st.none(), st.integers(0, 9)),
            st.sampled_from([None, 5.0]),
        ),
        st.tuples(st.just("unsubscribe"), st.integers(0, 3)),
        st.tuples(st.just("flush"), st.sampled_from([0.001, 0.05, 0.2])),
        st.tuples(st.just("resync"), st.one_of(st.none(), st.integers(0, 3))),
    ),
    max_size=60,
)


@settings(max_examples=int(os.environ.get("PL3XUS_PROPERTY_EXAMPLES", "150")), deadline=None)
@given(ops, st.booleans(), st.sampled_from([1, 2, 20_000]))
def test_replaying_frames_rebuilds_the_server_state(
    program: list[Any], deltas: bool, chunk: int
) -> None:
    """Whatever happens, and however snapshots are split, the replica converges."""
    rig = Rig(rate=100, deltas=deltas, chunk=chunk)
    store = rig.client(1)
    spawned: list[int] = []
    subs: dict[int, tuple[type[BaseModel], int | None]] = {}

    def alive(i: int) -> int | None:
        if i < len(spawned) and rig.world.contains(spawned[i]):
            return spawned[i]
        return None

    for op in program:
        kind = op[0]
        if kind == "spawn":
            comps: list[BaseModel] = [Position(x=op[1], y=0)]
            if op[2]:
                comps.append(Status(text="new"))
            parent = alive(len(spawned) - 1) if spawned and op[2] else None
            spawned.append(rig.world.spawn(*comps, parent=parent))
        elif kind in ("insert", "status") and (e := alive(op[1])) is not None:
            rig.world.insert(e, Position(x=op[2], y=1) if kind == "insert" else Status(text=op[2]))
        elif kind == "remove" and (e := alive(op[1])) is not None:
            rig.world.remove(e, op[2])
        elif kind == "despawn" and (e := alive(op[1])) is not None:
            rig.world.despawn(e)
        elif kind == "subscribe":
            entity = spawned[op[3]] if op[3] is not None and op[3] < len(spawned) else None
            options = {} if op[4] is None else {"max_rate_hz": op[4]}
            rig.subscribe(1, op[1], op[2], entity, **options)
            subs[op[1]] = (op[2], entity)
        elif kind == "unsubscribe" and op[1] in subs:
            rig.engine.handle_frame(1, True, [4, op[1]])
            store.remove_subscription(op[1])
            del subs[op[1]]
        elif kind == "flush":
            rig.flush(dt=op[1])
        elif kind == "resync" and (op[1] is None or op[1] in subs):
            rig.engine.handle_frame(1, True, [6, op[1]])
    # let every rate cap pass, every snapshot finish (chunk entities per flush per client)
    for _ in range(3 + len(spawned) * max(1, len(subs))):
        rig.flush(dt=1.0)
    for sub_id, (model, entity) in subs.items():
        expected = {e: v for e, v in rig.world.query(model) if entity is None or e == entity}
        assert dict(store.view(sub_id)) == expected
        assert store.complete(sub_id)


def test_field_deltas_send_only_changed_fields() -> None:
    rig = Rig(deltas=True)
    e = rig.world.spawn(Position(x=1, y=2))
    rig.client(1)
    rig.client(2, binary=False)
    rig.subscribe(1, 1, Position)
    rig.subscribe(2, 1, Position)
    rig.flush()  # snapshots: full values
    rig.world.insert(e, Position(x=1, y=5))
    out = rig.flush()
    assert out[1][2] == [[1, 0, [[e, {1: 5.0}]], [], []]]  # only field 1 (y)
    assert out[2][2] == [[1, 0, [[e, {"1": 5.0}]], [], []]]  # JSON keys are strings
    assert rig.stores[1].view(1)[e] == Position(x=1, y=5) == rig.stores[2].view(1)[e]
    # a late subscriber gets a full snapshot, then deltas like everyone else
    rig.client(3)
    rig.subscribe(3, 7, Position)
    rig.flush()
    rig.world.insert(e, Position(x=4, y=5))
    out = rig.flush()
    assert out[3][2] == [[7, 0, [[e, {0: 4.0}]], [], []]]
    assert rig.stores[3].view(7)[e] == Position(x=4, y=5)
    # changed and changed back within one flush: nothing to send
    rig.world.insert(e, Position(x=0, y=0))
    rig.world.insert(e, Position(x=4, y=5))
    assert rig.flush() == {}


def test_documented_sync_frame_bytes() -> None:
    from pathlib import Path

    world = World()
    registry = ComponentRegistry()
    registry.add(Position)
    engine = SyncEngine(world, registry, SyncSettings(max_update_rate_hz=10))
    robot = world.spawn(Position(x=0, y=0))
    engine.add_client(1)
    engine.handle_frame(1, True, [3, 7, "Position", None, {}])
    engine.flush(0.0)
    world.insert(robot, Position(x=99, y=0))
    ((_, frame),) = engine.flush(1.0)
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    assert isinstance(frame, bytes)
    assert f"msgpack ({len(frame)} bytes): {frame.hex(' ')}" in doc
    assert msgpack.packb([3, 7, "Position", None, {}]).hex(" ") in doc


def test_flush_into_hands_over_the_same_frames_in_the_same_order() -> None:
    rigs = [Rig(), Rig()]
    for rig in rigs:
        e = rig.world.spawn(Position(x=0, y=0))
        for cid in (1, 2, 3):
            rig.client(cid, binary=cid != 2)
            rig.subscribe(cid, 10, Position)
        rig.flush()
        rig.world.insert(e, Position(x=1, y=2))
        rig.engine.defer(2, [8, 1, "ok"], component=Position, entity=e)
    listed = rigs[0].engine.flush(5.0)
    handed: list[tuple[int, bytes | str]] = []
    rigs[1].engine.flush_into(5.0, lambda cid, data: handed.append((cid, data)))
    # (the order of connections within a flush is not specified)
    assert sorted(handed[:3], key=str) == sorted(listed[:3], key=str) and len(listed) == 4
    assert sorted(cid for cid, _ in handed[:3]) == [1, 2, 3]
    assert handed[3] == listed[3] and handed[3][0] == 2  # the reply after its SYNC frame
    assert handed[-1][1] == '[8,1,"ok"]'
    assert rigs[1].engine.statistics().frames == rigs[0].engine.statistics().frames


@pytest.mark.parametrize("n", [0, 1, 15, 16, 70_000])
def test_items_encoded_in_one_call_match_item_by_item(n: int) -> None:
    from pl3xus_rx.sync._wire import encode_item_json, encode_item_msgpack, encode_items

    items = [(i, (float(i), -0.5, "s")) for i in range(n)]
    assert encode_items(True, items) == b"".join(encode_item_msgpack(i) for i in items)
    assert encode_items(False, items) == ",".join(encode_item_json(i) for i in items)


class Unit(enum.Enum):
    CELSIUS = "C"
    KELVIN = "K"


class Origin(BaseModel):
    model_config = ConfigDict(frozen=True)
    site: str
    line: int


class Reading(BaseModel):
    """Immutable fields, none JSON-native: stored as tuples, dumped through pydantic."""

    at: datetime.datetime
    unit: Unit = Unit.CELSIUS
    tags: tuple[str, ...] = ()
    origin: Origin | None = None
    note: str | None = None


class Trace(BaseModel):
    """A mutable field: stored as a deep copy."""

    points: list[float]


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("deltas", [False, True])
def test_every_storage_kind_reaches_the_client_exactly(binary: bool, deltas: bool) -> None:
    world = World()
    registry = ComponentRegistry()
    registry.add(Reading, field_deltas=deltas)
    registry.add(Trace, field_deltas=deltas)
    engine = SyncEngine(world, registry, SyncSettings(max_update_rate_hz=1000))
    engine.add_client(1, binary=binary)
    store = Store(registry.wire_table())
    t0 = datetime.datetime(2026, 11, 26, 3, 0, tzinfo=datetime.UTC)
    origin = Origin(site="north", line=3)
    a = world.spawn(Reading(at=t0, tags=("x",), origin=origin), Trace(points=[1.0]))
    b = world.spawn(Reading(at=t0, unit=Unit.KELVIN))  # fields left at defaults: partial set
    for sub, model in ((1, Reading), (2, Trace)):
        store.add_subscription(sub, model.__name__, model, None)
        engine.handle_frame(1, binary, [3, sub, model.__name__, None, {}])

    def sync(now: float) -> None:
        for _, data in engine.flush(now):
            frame = msgpack.unpackb(data, strict_map_key=False) if binary else json.loads(data)
            store.apply(frame)

    def check() -> None:
        assert dict(store.view(1)) == dict(world.query(Reading))
        assert dict(store.view(2)) == dict(world.query(Trace))

    sync(1.0)
    check()
    steps = [
        lambda: world.insert(a, Reading(at=t0, tags=("x", "y"), origin=origin)),
        lambda: world.insert(b, Reading(at=t0 + datetime.timedelta(seconds=1), note="n")),
        lambda: world.insert(a, Reading(at=t0, origin=Origin(site="south", line=3))),
        lambda: world.insert(a, Trace(points=[1.0, 2.0])),
        lambda: world.remove(b, Reading),
        lambda: world.insert(b, Reading(at=t0, unit=Unit.KELVIN)),
    ]
    for n, step in enumerate(steps, start=2):
        step()
        sync(float(n))
        check()
    assert world.get(b, Reading).model_fields_set == {"at", "unit"}  # type: ignore[union-attr]


def test_a_big_snapshot_goes_out_in_parts_with_live_changes_between() -> None:
    rig = Rig(chunk=10)
    ents = [rig.world.spawn(Position(x=i, y=0)) for i in range(25)]
    store = rig.client(1)
    rig.subscribe(1, 1, Position)
    (group,) = rig.flush()[1][2]
    assert group[1] == 1 and len(group[2]) == 10  # SNAPSHOT, more to come
    assert not store.complete(1)
    rig.world.insert(ents[0], Position(x=100, y=0))  # already sent: goes out live
    rig.world.insert(ents[15], Position(x=115, y=0))  # still to come: its part carries it
    rig.world.remove(ents[20], Position)  # still to come: never mentioned
    late = rig.world.spawn(Position(x=-1, y=0))  # new: goes out live
    groups = rig.flush()[1][2]
    assert [g[1] for g in groups] == [0, 1 | 4]  # live changes, then the next part
    assert sorted(e for e, _ in groups[0][2]) == [ents[0], late]
    assert [e for e, _ in groups[1][2]] == ents[10:20]
    assert not store.complete(1)
    (group,) = rig.flush()[1][2]
    assert group[1] == 1 | 2 | 4 and [e for e, _ in group[2]] == ents[21:]
    assert store.complete(1)
    assert dict(store.view(1)) == dict(rig.world.query(Position))
    # a RESYNC in the middle starts over from the beginning
    rig.engine.handle_frame(1, True, [6, 1])
    assert rig.flush()[1][2][0][1] == 1
    rig.engine.handle_frame(1, True, [6, 1])
    assert [rig.flush()[1][2][0][1] for _ in range(2)] == [1, 5]
    stats = rig.engine.statistics()
    assert stats.snapshots_under_way == 1 and stats.snapshots == 1  # (the first one)
    assert rig.flush()[1][2][0][1] == 7
    stats = rig.engine.statistics()
    assert stats.snapshots_under_way == 0 and stats.snapshots == 2
    assert store.complete(1) and dict(store.view(1)) == dict(rig.world.query(Position))


class Sample(BaseModel):
    """Not JSON-native, with a computed field and an alias preferred by its config."""

    model_config = ConfigDict(serialize_by_alias=True)
    at: datetime.datetime
    value: float = Field(serialization_alias="v")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def doubled(self) -> float:
        return self.value * 2


def one_type(model: type[BaseModel], binary: bool = True) -> tuple[World, SyncEngine, Store]:
    """A world syncing ``model`` to one connection, subscribed (as sub 1) with a Store."""
    world = World()
    registry = ComponentRegistry()
    registry.add(model)
    engine = SyncEngine(world, registry, SyncSettings())
    store = Store(registry.wire_table())
    store.add_subscription(1, model.__name__, model)
    engine.handle_frame(1, binary, [3, 1, model.__name__, None, {}])
    return world, engine, store


def test_computed_fields_and_aliases_do_not_change_the_wire_fields() -> None:
    world, engine, store = one_type(Sample)
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    e = world.spawn(Sample(at=at, value=1.5))
    ((_, data),) = engine.flush(0.0)
    frame = msgpack.unpackb(data)
    assert frame[2][0][2] == [[e, ["2026-01-01T00:00:00Z", 1.5]]]  # the two fields only
    store.apply(frame)
    assert store.view(1)[e] == Sample(at=at, value=1.5)


def test_components_without_a_plain_field_list_are_refused_clearly() -> None:
    from pydantic import RootModel

    from pl3xus_rx import UnsupportedModel

    class Temperature(RootModel[float]):
        pass

    class Bag(BaseModel):
        model_config = ConfigDict(extra="allow")
        a: int

    registry = ComponentRegistry()
    with pytest.raises(UnsupportedModel, match="Temperature is a RootModel"):
        registry.add(Temperature)
    with pytest.raises(UnsupportedModel, match="extra='allow'"):
        registry.add(Bag)
    assert len(registry) == 0
    from client_sync import ClientTypeRegistry  # the client refuses them the same way

    with pytest.raises(UnsupportedModel, match="RootModel"):
        ClientTypeRegistry.builder().register(Temperature)


def test_json_frames_stay_valid_json_with_nan_and_infinity() -> None:

    def strict(text: str) -> Any:
        def refuse(token: str) -> Any:
            raise AssertionError(f"{token} is not JSON: browsers' JSON.parse rejects it")

        return json.loads(text, parse_constant=refuse)

    rig = Rig()
    e = rig.world.spawn(Position(x=math.nan, y=math.inf))
    store = rig.client(1, binary=False)
    rig.subscribe(1, 1, Position)
    ((_, snapshot),) = rig.engine.flush(1.0)
    assert strict(snapshot)[2][0][2] == [[e, ["NaN", "Infinity"]]]
    store.apply(strict(snapshot))
    value = store.view(1)[e]
    assert math.isnan(value.x) and value.y == math.inf
    rig.world.insert(e, Position(x=1.0, y=-math.inf))
    ((_, update),) = rig.engine.flush(2.0)
    store.apply(strict(update))
    assert store.view(1)[e] == Position(x=1.0, y=-math.inf)


class Serial(BaseModel):
    number: int


@pytest.mark.parametrize("binary", [True, False])
def test_integers_beyond_64_bits_reach_the_client(binary: bool) -> None:
    world, engine, store = one_type(Serial, binary)
    small, big = world.spawn(Serial(number=7)), world.spawn(Serial(number=2**70))
    for now in (1.0, 2.0):
        for _, data in engine.flush(now):
            store.apply(msgpack.unpackb(data) if binary else json.loads(data))
        assert dict(store.view(1)) == {small: Serial(number=7), big: world.get(big, Serial)}
        world.insert(big, Serial(number=-(2**80)))  # and as an update


def test_snapshot_items_are_bounded_per_connection_per_flush() -> None:
    rig = Rig(chunk=10)
    for i in range(25):
        rig.world.spawn(Position(x=i, y=0))
    store = rig.client(1)
    other = rig.client(2)
    for sub in (1, 2, 3):  # three subscriptions to the same 25 entities
        rig.subscribe(1, sub, Position)
    rig.subscribe(2, 1, Position)
    flushes = 0
    while not all(store.complete(s) for s in (1, 2, 3)):
        out = rig.flush()
        flushes += 1
        assert sum(len(g[2]) for g in out.get(1, [None, None, []])[2]) <= 10
        assert flushes < 20
    assert flushes == 8  # 75 entities, 10 a flush
    assert other.complete(1)  # another connection has its own budget
    for sub in (1, 2, 3):
        assert dict(store.view(sub)) == dict(rig.world.query(Position))


def test_unchanged_entities_are_not_encoded_again_for_later_snapshots() -> None:
    rig = Rig()
    ents = [rig.world.spawn(Position(x=i, y=0)) for i in range(100)]
    rig.client(1)
    rig.subscribe(1, 1, Position)
    rig.flush()

    def encodings() -> int:
        return rig.engine.statistics().item_encodings

    before = encodings()
    rig.client(2)
    rig.subscribe(2, 1, Position)  # a later snapshot: nothing changed, nothing encoded
    rig.flush()
    assert encodings() == before
    rig.world.insert(ents[0], Position(x=-1, y=-1))
    rig.world.remove(ents[1], Position)
    rig.flush()
    assert encodings() == before + 1  # the changed one, once for both subscribers
    rig.client(3)
    rig.subscribe(3, 1, Position)
    rig.flush()
    assert encodings() == before + 1  # and not again for a later snapshot
    for cid in (1, 2, 3):
        assert dict(rig.stores[cid].view(1)) == dict(rig.world.query(Position))
    key = (rig.registry.get(Position).type_id, True)
    assert ents[1] not in rig.engine._encoder._kept[key].data  # a removed entity is forgotten
    assert ents[2] in rig.engine._encoder._kept[key].data
    rig.engine.handle_frame(1, True, [4, 1])
    rig.engine.handle_frame(2, True, [4, 1])
    rig.engine.handle_frame(3, True, [4, 1])
    assert key not in rig.engine._encoder._kept  # no subscribers left: nothing kept
