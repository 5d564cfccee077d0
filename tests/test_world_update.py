"""World.update / update_many: the fast path for values the server produces itself stores,
reports and tracks exactly what insert of the same models would, validates as the model does,
and names what it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from pl3xus_rx import SyncServer, World
from pl3xus_rx.world import ComponentChange, EntityNotFound


class Position(BaseModel):
    x: float
    y: float


class Pose(BaseModel):
    x: float
    y: float
    theta: float = Field(0.0, ge=-4.0, le=4.0)


class Named(BaseModel):
    name: str

    @field_validator("name")
    @classmethod
    def no_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("blank")
        return value.strip()


class Odd(BaseModel):
    n: int

    @model_validator(mode="after")
    def odd(self) -> Odd:
        if self.n % 2 == 0:
            raise ValueError("even")
        return self


class Bag(BaseModel):  # not flat (a list field): stored as a deep copy
    items: list[int]
    label: str = ""


def recorded(world: World, model: type[BaseModel]) -> list[Any]:
    seen: list[Any] = []

    def keep(change: ComponentChange[Any]) -> None:
        seen.append((change.kind, change.entity, change.value))

    world.changes(model).subscribe(keep)
    return seen


ops = st.lists(
    st.tuples(
        st.integers(0, 5),  # which entity
        st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False)),
        st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False)),
        st.booleans(),  # partial (x only) or whole
        st.sampled_from(["store", "store", "store", "remove", "drain"]),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops, st.booleans(), st.booleans(), st.booleans())
def test_update_many_equals_insert_of_models(
    steps: list[Any], batched: bool, observed: bool, trusted: bool
) -> None:
    """Same state, same reports, same tracker codes as inserting the models, for whole and
    partial rows, in one batch or row by row, with the type's changes observed or not (the
    usual case, unobserved with whole rows, has a loop of its own), validated or trusted."""
    fast, slow = World(), World()
    entities = [fast.spawn() for _ in range(6)]
    assert [slow.spawn() for _ in range(6)] == entities
    if observed:
        fast_seen, slow_seen = recorded(fast, Position), recorded(slow, Position)
    else:
        fast_seen, slow_seen = [], []
    fast_pending = fast.track(Position, lambda: None)
    slow_pending = slow.track(Position, lambda: None)
    rows: list[tuple[Any, ...]] = []
    for index, x, y, partial, what in steps:
        entity = entities[index]
        current = slow.get(entity, Position)
        if what == "remove":
            if current is not None:
                slow.remove(entity, Position)
                fast.remove(entity, Position)
            continue
        if what == "drain":
            assert fast_pending.drain() == slow_pending.drain()
            continue
        if partial and current is not None:
            slow.insert(entity, Position(x=x, y=current.y))
            row: tuple[Any, ...] = (entity, x)
            if batched:
                fast.update_many(Position, [row], fields=["x"])
            else:
                fast.update(entity, Position, x=x)
        else:
            slow.insert(entity, Position(x=x, y=y))
            rows.append((entity, x, y))
            if trusted:  # (trusted rows must hold what validation would give)
                fast.update_many(Position, [[entity, float(x), float(y)]], trusted=True)
            else:
                fast.update_many(Position, [(entity, x, y)])
        assert fast.peek(Position) == slow.peek(Position)
    assert fast_seen == slow_seen
    assert fast_pending.drain() == slow_pending.drain()
    assert {e: fast.get(e, Position) for e in entities} == {
        e: slow.get(e, Position) for e in entities
    }
    assert fast.change_count(Position) == slow.change_count(Position)


def test_one_batch_equals_row_by_row() -> None:
    one, many = World(), World()
    entities = [one.spawn() for _ in range(50)]
    for _ in entities:
        many.spawn()
    rows = [(e, float(e), float(-e)) for e in entities] + [(entities[0], 1.5, 2)]
    assert one.update_many(Position, rows) == len(rows)
    for row in rows:
        many.update_many(Position, [row])
    assert one.peek(Position) == many.peek(Position)
    assert one.get(entities[0], Position) == Position(x=1.5, y=2.0)
    # an equal value changes nothing, and says so
    assert one.update_many(Position, [(entities[1], 2.0, -2.0)]) == 0
    assert one.update(entities[1], Position, y=-2) is False


def test_values_are_validated_as_the_model_validates_them() -> None:
    world = World()
    e = world.spawn(Pose(x=0, y=0), Named(name="a"), Odd(n=1))
    world.update(e, Pose, x=1)  # an int becomes a float, as the model makes it
    stored = world.peek(Pose)[e]
    assert stored == (1.0, 0.0, 0.0) and type(stored[0]) is float
    with pytest.raises(ValidationError) as refused:
        world.update_many(Pose, [(e, 1, 2, 0.5), (e, 1, 2, 9.0)])
    error = refused.value.errors()[0]
    assert error["loc"] == (1, "theta") and error["type"] == "less_than_equal"
    assert world.get(e, Pose) == Pose(x=1, y=0)  # none of the refused batch was stored
    with pytest.raises(ValidationError) as refused:
        world.update(e, Pose, x="far")
    assert refused.value.errors()[0]["loc"] == (0, "x")
    with pytest.raises(ValidationError) as refused:
        world.update_many(Pose, [(1.5, 1, 2, 0)])  # an entity must be an int
    assert refused.value.errors()[0]["loc"] == (0, "entity")
    # a field validator runs (the model's own schema), and what it returns is stored
    world.update(e, Named, name="  b ")
    assert world.get(e, Named) == Named(name="b")
    with pytest.raises(ValidationError):
        world.update(e, Named, name="  ")
    # a model validator runs too (such a model is built per row)
    world.update(e, Odd, n=3)
    assert world.get(e, Odd) == Odd(n=3)
    with pytest.raises(ValidationError, match="even"):
        world.update(e, Odd, n=4)
    assert world.get(e, Odd) == Odd(n=3)


def test_trusted_rows_are_stored_as_given() -> None:
    world = World()
    e = world.spawn(Position(x=0, y=0))
    assert world.update_many(Position, [(e, 1.0, 2.0)], trusted=True) == 1
    assert world.get(e, Position) == Position(x=1.0, y=2.0)
    with pytest.raises(ValueError, match="row 0 has 2 items"):
        world.update_many(Position, [(e, 1.0)], trusted=True)
    # a model that is not stored flat is still validated
    world.insert(e, Bag(items=[1]))
    with pytest.raises(ValidationError):
        world.update_many(Bag, [(e, "no", "x")])
    world.update(e, Bag, items=[1, 2])
    assert world.get(e, Bag) == Bag(items=[1, 2], label="")


def test_what_cannot_be_updated_is_named() -> None:
    world = World()
    e = world.spawn()
    with pytest.raises(ValueError, match="no field"):
        world.update(e, Position, z=1.0)
    with pytest.raises(KeyError, match="has no Position"):
        world.update(e, Position, x=1.0)
    with pytest.raises(EntityNotFound):
        world.update_many(Position, [(999, 1.0, 2.0)])
    with pytest.raises(EntityNotFound):
        world.update(999, Position, x=1.0)
    with pytest.raises(KeyError, match="has no Bag"):
        world.update(e, Bag, label="x")
    # rows of every field add the component
    assert world.update_many(Position, [(e, 1, 2)]) == 1
    assert world.get(e, Position) == Position(x=1, y=2)


def test_a_snapshot_reads_the_values_it_was_taken_with() -> None:
    world = World()
    entities = [world.spawn(Position(x=i, y=i)) for i in range(4)]
    late = world.spawn()
    snapshot = world.snapshot()
    world.update_many(Position, [(e, 100.0, 100.0) for e in entities] + [(late, 1.0, 1.0)])
    world.update(entities[0], Position, y=7.0)
    assert [snapshot.entry(Position, e) for e in entities] == [(i, i) for i in range(4)]
    assert not snapshot.has(Position, late)
    world.release(snapshot)
    assert world.get(entities[0], Position) == Position(x=100, y=7)


def test_the_server_syncs_and_checks_rows_like_inserts() -> None:
    """Through a SyncServer: rows reach the engine's tracking (a flush sends them), and the
    size check of a type that may outgrow max_value_bytes applies to rows as to inserts."""
    from pl3xus_rx import SyncSettings, ValueTooLarge

    server = SyncServer(sync=SyncSettings(max_value_bytes=65_536))
    server.sync_component(Position)
    server.sync_component(Named)
    world = server.world
    e = world.spawn(Position(x=0, y=0), Named(name="n"))
    pending = world.track(Position, lambda: None)
    world.update_many(Position, [(e, 3.0, 4.0)])
    assert pending.drain() == {e: 0}
    with pytest.raises(ValueTooLarge):
        world.update(e, Named, name="x" * 100_000)
    assert world.get(e, Named) == Named(name="n")


def test_drive_rows_stores_each_batch_and_survives_a_bad_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import reactivex

    world = World()
    a, b = world.spawn(Position(x=0, y=0)), world.spawn(Position(x=0, y=0))
    batches: reactivex.subject.Subject[Any] = reactivex.subject.Subject()
    world.drive_rows(Position, batches, fields=["x"])
    batches.on_next([(a, 1.0), (b, 2.0)])
    batches.on_next([(a, "far")])  # refused, logged, skipped
    batches.on_next([(a, 3.0)])
    assert world.get(a, Position) == Position(x=3, y=0)
    assert world.get(b, Position) == Position(x=2, y=0)
    assert "refused" in caplog.text
