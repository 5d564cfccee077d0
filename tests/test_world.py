"""The World: entities, components, change streams. No I/O."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from pydantic import BaseModel, ConfigDict

from pl3xus_rx.world import ChangeKind, ComponentChange, EntityNotFound, World


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
