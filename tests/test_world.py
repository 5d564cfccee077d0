"""The World: entities, components, change streams. No I/O."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from pl3xus_rx.world import (
    DESPAWNED,
    REMOVED,
    UPSERTED,
    WAS_REMOVED,
    ChangeKind,
    ComponentChange,
    EntityNotFound,
    World,
    merge_change,
)


class Position(BaseModel):
    x: float
    y: float


class Path(BaseModel):
    points: list[tuple[float, float]]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str


def record(world: World, model: type[BaseModel]) -> list[ComponentChange[Any]]:
    seen: list[ComponentChange[Any]] = []
    world.changes(model).subscribe(seen.append)
    return seen


def test_spawn_insert_update_remove_despawn_are_reported() -> None:
    w = World()
    seen = record(w, Position)
    e = w.spawn(Position(x=1, y=2))
    assert w.insert(e, Position(x=3, y=4))
    assert not w.insert(e, Position(x=3, y=4))  # equal: report by exception
    assert w.remove(e, Position) == Position(x=3, y=4)
    assert w.remove(e, Position) is None
    w.insert(e, Position(x=0, y=0))
    w.despawn(e)
    assert [(c.kind, c.entity) for c in seen] == [
        (ChangeKind.INSERTED, e),
        (ChangeKind.UPDATED, e),
        (ChangeKind.REMOVED, e),
        (ChangeKind.INSERTED, e),
        (ChangeKind.DESPAWNED, e),
    ]
    assert seen[1].value == Position(x=3, y=4)
    with pytest.raises(EntityNotFound, match=f"entity {e}"):
        w.get(e, Position)


def test_ids_are_never_reused() -> None:
    w = World()
    a = w.spawn()
    w.despawn(a)
    b = w.spawn()
    assert b != a and b > a


def test_values_cannot_be_changed_behind_the_worlds_back() -> None:
    w = World()
    mine = Path(points=[(0, 0)])
    e = w.spawn(mine)
    mine.points.append((1, 1))  # the caller's object, not the stored one
    got = w.get(e, Path)
    assert got is not None and got.points == [(0, 0)]
    got.points.append((2, 2))  # a copy handed out
    assert w.get(e, Path) == Path(points=[(0, 0)])
    flat = Position(x=1, y=1)
    f = w.spawn(flat)
    flat.x = 99
    assert w.get(f, Position) == Position(x=1, y=1)
    frozen = Frozen(name="a")
    g = w.spawn(frozen)
    assert w.get(g, Frozen) is frozen  # frozen and immutable: shared safely


def test_modify_emits_once_on_exit() -> None:
    w = World()
    e = w.spawn(Path(points=[]))
    seen = record(w, Path)
    with w.modify(e, Path) as path:
        path.points.append((1, 2))
        path.points.append((3, 4))
        assert w.get(e, Path) == Path(points=[])  # not applied until exit
    assert len(seen) == 1 and seen[0].value.points == [(1, 2), (3, 4)]
    with w.modify(e, Path):
        pass
    assert len(seen) == 1  # unchanged: nothing emitted
    with pytest.raises(KeyError, match="no Position"), w.modify(e, Position):
        pass


def test_parents_children_and_recursive_despawn() -> None:
    w = World()
    cell = w.spawn(Frozen(name="cell"))
    robot = w.spawn(Position(x=0, y=0), parent=cell)
    tool = w.spawn(Position(x=1, y=1), parent=robot)
    assert w.children(cell) == [robot] and w.parent(tool) == robot
    assert list(w.ancestors(tool)) == [robot, cell]
    seen = record(w, Position)
    w.despawn(cell)
    assert {c.entity for c in seen} == {robot, tool}
    assert all(c.kind is ChangeKind.DESPAWNED for c in seen)
    assert w.entities() == []
    with pytest.raises(EntityNotFound):
        w.spawn(parent=cell)


def test_query_count_and_components_of() -> None:
    w = World()
    a = w.spawn(Position(x=1, y=1), Frozen(name="a"))
    b = w.spawn(Position(x=2, y=2))
    assert dict(w.query(Position)) == {a: Position(x=1, y=1), b: Position(x=2, y=2)}
    assert w.count(Position) == 2 and w.count(Frozen) == 1
    assert w.has(a, Frozen) and not w.has(b, Frozen)
    assert Frozen(name="a") in w.components_of(a)
    with pytest.raises(ValueError, match="same type"):
        w.spawn(Position(x=0, y=0), Position(x=1, y=1))


def test_drive_a_component_from_an_observable() -> None:
    w = World()
    e = w.spawn()
    seen = record(w, Position)
    subject: reactivex.subject.Subject[Position] = reactivex.subject.Subject()
    sub = w.drive(e, subject)
    subject.on_next(Position(x=1, y=0))
    subject.on_next(Position(x=1, y=0))  # equal: nothing
    subject.on_next(Position(x=2, y=0))
    w.despawn(e)
    subject.on_next(Position(x=3, y=0))  # after despawn: ignored
    sub.dispose()
    assert [c.value.x for c in seen] == [1, 2, 2]
    assert seen[-1].kind is ChangeKind.DESPAWNED


def test_a_raising_subscriber_does_not_stop_the_world() -> None:
    w = World()
    errors: list[Exception] = []

    def bad(_: Any) -> None:
        raise RuntimeError("boom")

    w.changes(Position).subscribe(on_next=bad, on_error=errors.append)
    good = record(w, Position)
    e = w.spawn(Position(x=0, y=0))
    w.insert(e, Position(x=1, y=0))
    assert len(errors) == 1 and len(good) == 2


class Reading(BaseModel):
    value: float = 0.0
    unit: str = "C"


def test_updates_in_place_keep_values_and_fields_set_exact() -> None:
    w = World()
    seen = record(w, Reading)
    e = w.spawn(Reading(value=1.0))  # unit left at its default: not in fields_set
    got = w.get(e, Reading)
    assert got is not None and got.model_fields_set == {"value"}
    first = Reading(value=2.0, unit="K")
    assert w.insert(e, first)
    first.value = 99.0  # the caller's object: the World kept its own values
    assert w.get(e, Reading) == Reading(value=2.0, unit="K")
    assert w.get(e, Reading).model_fields_set == {"value", "unit"}  # type: ignore[union-attr]
    assert w.insert(e, Reading(value=3.0))  # back to a partial fields_set
    assert w.get(e, Reading).model_fields_set == {"value"}  # type: ignore[union-attr]
    assert w.insert(e, Reading(value=5.0, unit="F"))
    # values handed to subscribers earlier are not changed by later updates
    assert [c.value.value for c in seen] == [1.0, 2.0, 3.0, 5.0]
    handed_out = w.get(e, Reading)
    w.insert(e, Reading(value=6.0))
    assert handed_out == Reading(value=5.0, unit="F")
    # model_construct() may leave required fields out; the stored value is then exactly that
    p = w.spawn(Position(x=1, y=2))
    assert w.insert(p, Position.model_construct(x=4.0))
    assert w.get(p, Position).__dict__ == {"x": 4.0}  # type: ignore[union-attr]
    assert w.insert(p, Position(x=5, y=6))
    assert w.get(p, Position).__dict__ == {"x": 5.0, "y": 6.0}  # type: ignore[union-attr]


def test_insert_many_is_insert_in_a_loop() -> None:
    a, b = World(), World()
    seen_a, seen_b = record(a, Position), record(b, Position)
    ea = [a.spawn() for _ in range(3)]
    eb = [b.spawn() for _ in range(3)]
    batches = [
        [(0, Position(x=1, y=1)), (1, Position(x=2, y=2))],  # inserts
        [(0, Position(x=1, y=1)), (0, Position(x=5, y=5)), (2, Frozen(name="f"))],
        [(1, Position(x=2, y=3)), (1, Position(x=2, y=3)), (2, Path(points=[(1, 1)]))],
        [(1, Position.model_construct(x=7.0)), (1, Position(x=7, y=7)), (0, Position(x=5, y=5))],
    ]
    for batch in batches:
        changed = sum(a.insert(ea[i], v) for i, v in batch)
        assert b.insert_many([(eb[i], v) for i, v in batch]) == changed
    assert [(c.kind, c.value.__dict__) for c in seen_a] == [
        (c.kind, c.value.__dict__) for c in seen_b
    ]
    assert len(seen_b) == 6
    assert [b.components_of(e) for e in eb] == [a.components_of(e) for e in ea]
    ghost = b.spawn()
    b.despawn(ghost)
    with pytest.raises(EntityNotFound):
        b.insert_many([(eb[0], Position(x=9, y=9)), (ghost, Position(x=0, y=0))])
    assert b.get(eb[0], Position) == Position(x=9, y=9)  # the pairs before it went in


def test_change_trackers_conflate_and_never_lose_a_removal() -> None:
    w = World()
    firsts: list[str] = []
    tracker = w.track(Position, lambda: firsts.append("first"))
    a, b, c = w.spawn(Position(x=0, y=0)), w.spawn(Position(x=1, y=1)), w.spawn()
    assert tracker.drain() == {a: UPSERTED, b: UPSERTED} and firsts == ["first"]
    w.insert(a, Position(x=1, y=1))
    w.insert(a, Position(x=2, y=2))  # conflated
    w.insert(a, Position(x=2, y=2))  # equal: nothing
    w.remove(b, Position)
    w.insert(b, Position(x=3, y=3))  # removed then inserted again: both are kept
    w.insert(b, Position(x=3, y=4))  # ... and updated
    w.insert(c, Position(x=0, y=0))
    w.remove(c, Position)
    assert tracker.drain() == {a: UPSERTED, b: UPSERTED | WAS_REMOVED, c: REMOVED}
    assert firsts == ["first", "first"]
    w.despawn(a)
    w.insert(b, Position(x=4, y=4))
    assert tracker.drain() == {a: DESPAWNED, b: UPSERTED}
    assert tracker.drain() == {}
    tracker.close()
    w.insert(b, Position(x=5, y=5))
    assert tracker.pending == {} and firsts == ["first", "first", "first"]


_values = st.one_of(
    st.builds(Position, x=st.sampled_from([0.0, 1.0, 2.5]), y=st.sampled_from([0.0, -1.0])),
    st.builds(Reading, value=st.sampled_from([0.0, 1.0])),
    st.sampled_from([0.0, 2.5]).map(lambda x: Position.model_construct(x=x)),  # y missing
    st.builds(Reading, value=st.sampled_from([0.0, 1.0]), unit=st.sampled_from(["C", "K"])),
    st.builds(Path, points=st.lists(st.tuples(st.just(1.0), st.just(2.0)), max_size=2)),
    st.builds(Frozen, name=st.sampled_from(["a", "b"])),
)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.integers(0, 3), _values, st.booleans()),
        st.tuples(st.just("many"), st.lists(st.tuples(st.integers(0, 3), _values), max_size=4)),
        st.tuples(st.just("remove"), st.integers(0, 3), st.sampled_from([Position, Reading])),
        st.tuples(st.just("mutate_handed_out"), st.integers(0, 3)),
        st.tuples(st.just("drain")),
    ),
    max_size=40,
)


def _state(value: BaseModel) -> tuple[Any, ...]:
    return (type(value), value.model_dump(), frozenset(value.model_fields_set))


@settings(max_examples=150, deadline=None)
@given(_ops)
@example(  # removed, inserted again, updated: the removal must still be pending
    [
        ("insert", 0, Position(x=0, y=0), False),
        ("remove", 0, Position),
        ("insert", 0, Position(x=1, y=0), False),
        ("insert", 0, Position(x=2, y=0), True),
        ("drain",),
    ]
)
def test_the_world_matches_a_naive_model(ops: list[tuple[Any, ...]]) -> None:
    """Whatever callers do with the objects they inserted or were handed, the World's
    state and its reported changes are those of a dict of snapshots."""
    w = World()
    entities = [w.spawn() for _ in range(4)]
    model: dict[tuple[int, type[BaseModel]], tuple[Any, ...]] = {}
    reported: list[tuple[Any, ...]] = []
    trackers = {}
    for tp in (Position, Reading, Path, Frozen):
        w.changes(tp).subscribe(lambda c: reported.append((c.kind, c.entity, _state(c.value))))
        trackers[tp] = w.track(tp, lambda: None)
    codes: dict[tuple[Any, int], int] = {}
    expected: list[tuple[Any, ...]] = []

    def apply(i: int, value: BaseModel) -> bool:
        key = (i, type(value))
        new = _state(value)
        if key in model and model[key][1] == new[1]:
            return False  # equal values (fields_set aside): report by exception
        kind = ChangeKind.UPDATED if key in model else ChangeKind.INSERTED
        model[key] = new
        expected.append((kind, entities[i], new))
        code = codes.get(key)
        codes[key] = UPSERTED if code is None else merge_change(code, UPSERTED)
        return True

    for op in ops:
        if op[0] == "insert":
            _, i, value, mutate_after = op
            value = value.model_copy(deep=True)
            assert w.insert(entities[i], value) == apply(i, value)
            if mutate_after and isinstance(value, Position):
                value.x = 123.0  # the caller's object, after the insert
            elif mutate_after and isinstance(value, Path):
                value.points.append((9.0, 9.0))
        elif op[0] == "many":
            pairs = [(entities[i], v.model_copy(deep=True)) for i, v in op[1]]
            want = sum(apply(i, v) for i, v in op[1])
            assert w.insert_many(pairs) == want
        elif op[0] == "remove":
            _, i, tp = op
            gone = w.remove(entities[i], tp)
            old = model.pop((i, tp), None)
            assert (gone is None) == (old is None)
            if old is not None:
                expected.append((ChangeKind.REMOVED, entities[i], old))
                code = codes.get((i, tp))
                codes[(i, tp)] = REMOVED if code is None else merge_change(code, REMOVED)
        elif op[0] == "mutate_handed_out":
            for value in w.components_of(entities[op[1]]):
                if isinstance(value, Position):
                    value.y = -50.0
                elif isinstance(value, Path):
                    value.points.append((7.0, 7.0))
        if op[0] == "drain" or op is ops[-1]:
            drained = {(e, tp): code for tp, t in trackers.items() for e, code in t.drain().items()}
            assert drained == {(entities[i], tp): code for (i, tp), code in codes.items()}
            codes.clear()
        for (i, tp), state in model.items():
            got = w.get(entities[i], tp)
            assert got is not None and _state(got) == state
    assert reported == expected


def test_despawn_goes_children_first_in_spawn_order_at_any_depth() -> None:
    w = World()
    seen: list[int] = []
    w.changes(Position).subscribe(lambda c: seen.append(c.entity))
    root = w.spawn(Position(x=0, y=0))
    a, b = w.spawn(Position(x=1, y=0), parent=root), w.spawn(Position(x=2, y=0), parent=root)
    a1, a2 = w.spawn(Position(x=3, y=0), parent=a), w.spawn(Position(x=4, y=0), parent=a)
    deep = b
    for _ in range(3000):  # deeper than Python's recursion limit
        deep = w.spawn(Position(x=5, y=0), parent=deep)
    seen.clear()
    w.despawn(root)
    assert seen[:3] == [a1, a2, a] and seen[3] == deep and seen[-2:] == [b, root]
    assert len(seen) == 3005 and w.entities() == []


def test_a_component_that_is_not_a_model_is_refused_before_anything_changes() -> None:
    from pl3xus_rx import UnsupportedModel

    w = World()
    with pytest.raises(UnsupportedModel, match="pydantic models"):
        w.spawn(Position(x=0, y=0), {"x": 1})  # type: ignore[arg-type]
    assert w.entities() == []  # no half-made entity
    e = w.spawn()
    with pytest.raises(TypeError, match="got <class 'dict'>"):
        w.insert(e, {"x": 1})  # type: ignore[arg-type]
    assert w.components_of(e) == []


def test_adopt_keeps_another_worlds_ids_and_hierarchy() -> None:
    from pl3xus_rx.world import EntityId

    world = World()
    assert world.adopt(EntityId(7), parent=EntityId(3))  # both made
    assert world.contains(EntityId(3)) and world.parent(EntityId(7)) == 3
    assert world.children(EntityId(3)) == [7]
    assert not world.adopt(EntityId(7))  # exists already
    world.adopt(EntityId(7), parent=EntityId(5))  # moved
    assert world.parent(EntityId(7)) == 5 and world.children(EntityId(3)) == []
    with pytest.raises(ValueError, match="not a parent"):
        world.adopt(EntityId(5), parent=EntityId(7))
    assert world.spawn() == 8  # later ids stay above the adopted ones
    world.despawn(EntityId(5))
    assert not world.contains(EntityId(7))  # children go with their parent
