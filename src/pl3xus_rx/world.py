"""The World: entities with typed components, and a change stream per component type.

No I/O. The server owns one World; everything clients see is derived from its changes.

Values and mutation: the World stores its own copy of every component value and hands out
copies, so no caller can change a stored value behind its back without a change being seen.
Copies are as cheap as the model allows: a model whose fields are all immutable (numbers,
strings, tuples, enums, frozen models, ...) and that has no private or extra attributes is
stored as a tuple of its field values (no instance to copy; comparing, reading and encoding
work on the tuple) and rebuilt as a fresh instance when read; a frozen model with only
immutable fields is not copied at all; anything else is deep-copied.

Despawning an entity despawns its children too (recursively).
"""

from __future__ import annotations

import datetime
import decimal
import enum
import itertools
import logging
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import (
    Any,
    Final,
    Generic,
    TypeAlias,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
)

import reactivex
from pydantic import BaseModel, ValidationError
from reactivex import abc as rx_abc

from ._rows import named_errors, row_validator
from ._rx import SafeSubject
from .exceptions import EntityNotFound, UnsupportedModel
from .protocol import ChangeKind

__all__ = [
    "ABSENT",
    "DESPAWNED",
    "PRESENT",
    "FINAL",
    "REMOVED",
    "UPSERTED",
    "WAS_REMOVED",
    "ChangeKind",
    "ChangeTracker",
    "ComponentChange",
    "EntityId",
    "EntityNotFound",
    "World",
    "WorldSnapshot",
]

logger = logging.getLogger(__name__)

EntityId: TypeAlias = int
"""An entity's id: an ``int`` starting at 1, never reused during a World's life (the same
type on the server and in clients, so that an id a client sent can be passed as it is;
``EntityId(x)`` is ``int(x)``)."""

C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ComponentChange(Generic[C]):
    """One change of one component.

    Attributes:
        kind: What happened.
        entity: The entity.
        value: The new value (INSERTED, UPDATED) or the last value (REMOVED, DESPAWNED).
    """

    kind: ChangeKind
    entity: EntityId
    value: C


_IMMUTABLE = (
    int,
    float,
    str,
    bytes,
    bool,
    type(None),
    complex,
    decimal.Decimal,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    enum.Enum,
    frozenset,
)


def _immutable_annotation(tp: Any) -> bool:
    if tp is Any:
        return False
    origin = get_origin(tp)
    if origin is None:
        if isinstance(tp, type):
            if issubclass(tp, BaseModel):
                return bool(tp.model_config.get("frozen")) and _all_fields_immutable(tp)
            return issubclass(tp, _IMMUTABLE)
        return False
    if origin is tuple or origin is Union or origin is frozenset:
        return all(_immutable_annotation(a) for a in get_args(tp) if a is not Ellipsis)
    import types as _types

    if origin is _types.UnionType:
        return all(_immutable_annotation(a) for a in get_args(tp))
    if str(origin) == "typing.Literal":
        return True
    if getattr(origin, "__name__", "") == "Annotated":
        return _immutable_annotation(get_args(tp)[0])
    return False


def _all_fields_immutable(model: type[BaseModel]) -> bool:
    return all(_immutable_annotation(f.annotation) for f in model.model_fields.values())


def _shallow_copy(value: BaseModel) -> BaseModel:
    # What BaseModel.__copy__ does, minus its generality: fields are immutable, so copying
    # the containers is enough.
    cls = type(value)
    new = cls.__new__(cls)
    setattr_ = object.__setattr__
    setattr_(new, "__dict__", value.__dict__.copy())
    setattr_(new, "__pydantic_fields_set__", value.__pydantic_fields_set__.copy())
    extra = value.__pydantic_extra__
    setattr_(new, "__pydantic_extra__", None if extra is None else extra.copy())
    private = value.__pydantic_private__
    setattr_(new, "__pydantic_private__", None if private is None else private.copy())
    return new


# How the World keeps its own copy of a model's values (see the module docstring).
_FROZEN, _FLAT, _DEEP = 0, 1, 2


def _storage(model: type[BaseModel]) -> int:
    if not _all_fields_immutable(model):
        return _DEEP
    if model.model_config.get("frozen"):
        return _FROZEN
    if model.__private_attributes__ or model.model_config.get("extra") == "allow":
        return _DEEP  # private or extra attributes may hold anything
    return _FLAT


def _equal(a: BaseModel, b: BaseModel) -> bool:
    # BaseModel.__eq__ without its generic checks; same type is known here.
    return (
        a.__dict__ == b.__dict__
        and a.__pydantic_private__ == b.__pydantic_private__
        and a.__pydantic_extra__ == b.__pydantic_extra__
    )


_set_attr = object.__setattr__

_Plan: TypeAlias = tuple[Any, tuple[int, ...] | None]


class _Kind:
    """What the World knows about one component type."""

    __slots__ = (
        "changes",
        "check",
        "copy",
        "entries",
        "fields",
        "model",
        "names",
        "plans",
        "storage",
        "subject",
        "trackers",
        "undo",
    )

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self.entries: dict[EntityId, Any] = {}  # entity -> stored entry (see own())
        self.changes = 0  # changes so far (World.change_count)
        # while a snapshot is read: entity -> its entry at the snapshot (or ABSENT), kept
        # at its first change since (see World.snapshot)
        self.undo: dict[EntityId, Any] | None = None
        self.subject: SafeSubject[ComponentChange[Any]] | None = None
        self.trackers: tuple[ChangeTracker, ...] = ()
        # called with each value about to be stored; raising refuses it (see set_check)
        self.check: Callable[[BaseModel], None] | None = None
        self.storage = _storage(model)
        self.names = tuple(model.model_fields)
        self.fields = len(self.names)
        # (fields, trusted) -> row validator and field positions (see plan())
        self.plans: dict[tuple[tuple[str, ...] | None, bool], _Plan] = {}
        self.copy: Callable[[Any], Any]
        if self.storage == _FROZEN:
            self.copy = lambda v: v
        elif self.storage == _FLAT:
            self.copy = _shallow_copy
        else:
            self.copy = lambda v: v.model_copy(deep=True)

    def plan(self, fields: tuple[str, ...] | None, trusted: bool) -> _Plan:
        """How rows of ``fields`` are validated and stored (made once per fields and
        ``trusted``): the batch validator (``None`` when trusted, or when the model must be
        built) and the fields' positions (``None``: every field, in order)."""
        key = (fields, trusted)
        names = self.names if fields is None else fields
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise ValueError(f"{self.model.__name__} has no field(s) {', '.join(unknown)}")
        if len(set(names)) != len(names):
            raise ValueError(f"a field is named twice in {list(names)}")
        full = fields is None or names == self.names
        positions = None if full else tuple(self.names.index(name) for name in names)
        validator = None
        if not trusted and self.storage == _FLAT:
            validator = row_validator(self.model, names)
        plan = self.plans[key] = (validator, positions)
        return plan

    def own(self, value: BaseModel) -> Any:
        """The entry to store for ``value``: a tuple of its field values when it is a FLAT
        model with every field present and set, else an instance nobody else holds (or the
        value itself when frozen)."""
        if self.storage == _FLAT:
            fields = value.__dict__
            if len(fields) == self.fields and len(value.__pydantic_fields_set__) == self.fields:
                return tuple(fields.values())
        return self.copy(value)

    def build(self, entry: tuple[Any, ...]) -> BaseModel:
        """A new instance from a tuple entry (what validation would have produced)."""
        value = object.__new__(self.model)
        _set_attr(value, "__dict__", dict(zip(self.names, entry, strict=True)))
        _set_attr(value, "__pydantic_fields_set__", set(self.names))
        _set_attr(value, "__pydantic_extra__", None)
        _set_attr(value, "__pydantic_private__", None)
        return value

    def view(self, entry: Any) -> Any:
        """A value for the outside world: a new instance, or the stored one if frozen."""
        return self.build(entry) if type(entry) is tuple else self.copy(entry)

    def same(self, entry: Any, value: BaseModel) -> bool:
        """Whether the stored ``entry`` equals ``value`` (``==`` of pydantic models)."""
        if type(entry) is tuple:
            return dict(zip(self.names, entry, strict=True)) == value.__dict__
        return _equal(entry, value)


def entry_fields(entry: Any) -> tuple[Any, ...]:
    """The field values, in field order, of a :meth:`World.peek` entry."""
    if type(entry) is tuple:
        return entry
    return tuple(entry.__dict__.values())


ABSENT: Final = object()
"""In a snapshot's undo log: the entity had no such component (or did not exist) then."""
PRESENT: Final = object()
"""In a snapshot's entity log: the entity existed then."""

_MISSING: Final = object()


def _frozen_ids(keys: Iterable[EntityId]) -> Sequence[EntityId]:
    """``keys`` now (one call: nothing changes meanwhile), as an array of 64-bit integers:
    unlike a list or a tuple of ints, nothing for the garbage collector to walk (a list
    if an id does not fit)."""
    now = tuple(keys)
    try:
        return array("q", now)
    except OverflowError:
        return list(now)


class WorldSnapshot:
    """A World as it was at one instant (:meth:`World.snapshot`), read from another thread
    while the World goes on. Nothing is copied when it is taken: until it is released, the
    World keeps, at the first change of each entry, entity and parent, what that change
    replaces (its undo log); a read looks at the World's own tables first, then at the log
    (in that order, so that a change made between the two is seen in the log). Big
    containers are never made (the garbage collector would walk them, holding the
    interpreter, at each pass): ids come in chunks.

    Attributes:
        next_id: :attr:`World.next_id` then.
    """

    __slots__ = ("_entity_undo", "_kinds", "_parent_undo", "_parents", "_world", "next_id")

    def __init__(self, world: World, next_id: EntityId) -> None:
        self._world = world
        self._kinds = dict(world._kinds)
        self._parent_undo = world._parent_undo
        self._entity_undo = world._entity_undo
        self._parents = world._parent
        self.next_id = next_id

    @property
    def models(self) -> list[type[BaseModel]]:
        """The component types the World had."""
        return list(self._kinds)

    def entity_chunks(self, size: int) -> Iterator[list[EntityId]]:
        """Every entity then, in chunks of at most ``size``, in spawn order (but those
        despawned just after the snapshot, which come last)."""
        undo = self._entity_undo or {}
        return _chunks(self._world._entities, undo, size)

    def id_chunks(self, model: type[BaseModel], size: int) -> Iterator[list[EntityId]]:
        """The entities that had a ``model`` component then, in chunks of at most
        ``size``."""
        kind = self._kinds.get(model)
        if kind is None:
            return iter(())
        return _chunks(kind.entries, kind.undo or {}, size)

    def entry(self, model: type[BaseModel], entity: EntityId) -> Any:
        """The stored entry of ``entity``'s ``model`` component then, or :data:`ABSENT`."""
        return self.entries(model, (entity,))[0]

    def entries(self, model: type[BaseModel], entities: Iterable[EntityId]) -> list[Any]:
        """:meth:`entry` of each of ``entities``."""
        kind = self._kinds.get(model)
        if kind is None:
            return [ABSENT for _ in entities]
        stored, undo, missing = kind.entries.get, kind.undo, _MISSING
        if undo is None:  # (released: the World's tables are what they are)
            return [stored(e, ABSENT) for e in entities]
        kept = undo.get
        out = []
        for entity in entities:
            entry = stored(entity, ABSENT)  # (the table first, then what was kept)
            old = kept(entity, missing)
            out.append(entry if old is missing else old)
        return out

    def has(self, model: type[BaseModel], entity: EntityId) -> bool:
        """Whether ``entity`` had a ``model`` component then."""
        return self.entry(model, entity) is not ABSENT

    def parent(self, entity: EntityId) -> EntityId | None:
        """``entity``'s parent then."""
        parent = self._parents.get(entity)
        undo = self._parent_undo
        if undo is not None:
            kept = undo.get(entity, _MISSING)
            if kept is not _MISSING:
                return cast(EntityId | None, kept)
        return parent


def _chunks(
    live: dict[EntityId, Any], undo: dict[EntityId, Any], size: int
) -> Iterator[list[EntityId]]:
    """The keys ``live`` had at the snapshot, from its keys now and the undo log: those now
    that the log does not say were added since, then those the log says were there and are
    no longer."""
    now = _frozen_ids(live)
    kept = dict(undo)  # (after ``now``: whatever changed before it is in here)
    added = {e for e, old in kept.items() if old is ABSENT}
    for start in range(0, len(now), size):
        chunk = list(now[start : start + size])
        if added:
            chunk = [e for e in chunk if e not in added]
        if chunk:
            yield chunk
    gone = {e for e, old in kept.items() if old is not ABSENT}
    if gone:
        gone.difference_update(now)
        rest = sorted(gone)
        for start in range(0, len(rest), size):
            yield rest[start : start + size]


# Pending-change codes of a ChangeTracker: the final state in the low two bits, and a flag
# set if a removal happened since the last drain (so that it is never lost).
UPSERTED: Final = 0
"""The component was inserted or updated (and is there now)."""
REMOVED: Final = 1 | 4
"""The component was removed; the entity lives on."""
DESPAWNED: Final = 2
"""The entity was despawned."""
WAS_REMOVED: Final = 4
"""Flag: a removal happened since the last drain (``UPSERTED | WAS_REMOVED``: removed, then
inserted again)."""
FINAL: Final = 3
"""Mask of the final state (``code & FINAL`` is 0, 1 or 2)."""


def merge_change(old: int, new: int) -> int:
    """The pending code after ``old`` then ``new``."""
    if new & FINAL == UPSERTED:
        return UPSERTED | (old & WAS_REMOVED) | (new & WAS_REMOVED)
    if new & FINAL == REMOVED & FINAL:
        return REMOVED
    return DESPAWNED


class ChangeTracker:
    """Which entities' ``model`` component changed since the last :meth:`drain`: the sync
    engine's view of the World. Cheaper than an Observable (the World writes the codes
    itself, no call per change) and conflating: one code per entity, see ``UPSERTED``,
    ``REMOVED``, ``DESPAWNED``, ``WAS_REMOVED``.

    Attributes:
        model: The tracked component type.
        pending: entity -> code, since the last drain (read-only outside the World).
    """

    __slots__ = ("_kind", "model", "on_first", "pending")

    def __init__(self, kind: _Kind, on_first: Callable[[], None]) -> None:
        self._kind = kind
        self.model = kind.model
        self.on_first = on_first
        self.pending: dict[EntityId, int] = {}

    def drain(self) -> dict[EntityId, int]:
        """The pending changes; tracking starts afresh."""
        taken, self.pending = self.pending, {}
        return taken

    def close(self) -> None:
        """Stop tracking."""
        self._kind.trackers = tuple(t for t in self._kind.trackers if t is not self)

    def _record(self, entity: EntityId, code: int) -> None:
        pending = self.pending
        old = pending.get(entity)
        if old is None:
            pending[entity] = code
            if len(pending) == 1:
                self.on_first()
        else:
            pending[entity] = merge_change(old, code)


class World:
    """Entities and their components; the single source of truth on the server.

    Every change is reported, once, to the per-type Observable from :meth:`changes` and to
    the type's change trackers (:meth:`track`, the sync engine's). Inserting a value equal
    to the current one reports nothing (report by exception).
    """

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._next_free = 1  # (ids below it may be taken by adopt())
        # entity -> its component types, in insertion order (a dict used as an ordered set)
        self._entities: dict[EntityId, dict[type[BaseModel], None]] = {}
        self._parent: dict[EntityId, EntityId] = {}
        self._children: dict[EntityId, list[EntityId]] = {}
        # type -> its stored entries, Observable and trackers
        self._kinds: dict[type[BaseModel], _Kind] = {}
        self._structure = 0  # spawns, despawns and moves so far (change_count())
        self._parent_undo: dict[EntityId, EntityId | None] | None = None  # (see snapshot)
        self._entity_undo: dict[EntityId, object] | None = None
        self._snapshot: WorldSnapshot | None = None  # the one being read, if any

    # ------------------------------------------------------------------ internals

    def _kind(self, model: type[BaseModel]) -> _Kind:
        kind = self._kinds.get(model)
        if kind is None:
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise UnsupportedModel(
                    f"components are pydantic models (BaseModel subclasses), got {model!r}"
                )
            kind = self._kinds[model] = _Kind(model)
        return kind

    def _entries(self, model: type[BaseModel]) -> dict[EntityId, Any]:
        kind = self._kinds.get(model)
        return kind.entries if kind is not None else {}

    def _emit(self, kind: _Kind, change: ChangeKind, entity: EntityId, entry: Any) -> None:
        kind.changes += 1
        code = REMOVED if change is ChangeKind.REMOVED else DESPAWNED
        for tracker in kind.trackers:
            tracker._record(entity, code)
        subject = kind.subject
        if subject is not None and subject.observers:
            subject.on_next(ComponentChange(change, entity, kind.view(entry)))

    def _components(self, entity: EntityId) -> dict[type[BaseModel], None]:
        comps = self._entities.get(entity)
        if comps is None:
            raise EntityNotFound(f"entity {entity} does not exist (never spawned, or despawned)")
        return comps

    def track(self, model: type[BaseModel], on_first: Callable[[], None]) -> ChangeTracker:
        """Start tracking which entities' ``model`` component changes; ``on_first()`` is
        called when a change arrives while nothing is pending. :meth:`ChangeTracker.close`
        stops."""
        kind = self._kind(model)
        tracker = ChangeTracker(kind, on_first)
        kind.trackers = (*kind.trackers, tracker)
        return tracker

    # ------------------------------------------------------------------ entities

    def spawn(self, *components: BaseModel, parent: EntityId | None = None) -> EntityId:
        """Create an entity with ``components`` (at most one per type), under ``parent``.

        Raises:
            EntityNotFound: ``parent`` does not exist.
            ValueError: two components of one type were given.
            UnsupportedModel: a component is not a pydantic model (a ``TypeError``).
        """
        if parent is not None:
            self._components(parent)
        types = [type(c) for c in components]
        for component in components:  # before anything changes: no half-made entity
            check = self._kind(type(component)).check
            if check is not None:
                check(component)
        if len(set(types)) != len(types):
            raise ValueError("spawn() got two components of the same type")
        entity = EntityId(next(self._ids))
        while entity in self._entities:  # (an adopted id)
            entity = EntityId(next(self._ids))
        self._next_free = max(self._next_free, entity + 1)
        if self._entity_undo is not None and entity not in self._entity_undo:
            self._entity_undo[entity] = ABSENT
        self._entities[entity] = {}
        self._structure += 1
        if parent is not None:
            self._parent[entity] = parent
            self._children.setdefault(parent, []).append(entity)
        for component in components:
            self.insert(entity, component)
        return entity

    def adopt(self, entity: EntityId, parent: EntityId | None = None) -> bool:
        """Make sure ``entity`` exists with this id (a replica of another World uses the
        other's ids), under ``parent`` if given (created too when missing; an existing
        entity is moved under it). Ids this World hands out later stay above it.

        Returns:
            True if the entity was created.

        Raises:
            ValueError: ``parent`` is ``entity`` or one of its descendants.
        """
        created = False
        if entity not in self._entities:
            if self._entity_undo is not None and entity not in self._entity_undo:
                self._entity_undo[entity] = ABSENT
            self._entities[entity] = {}
            self._structure += 1
            created = True
            if entity >= self._next_free:
                self._next_free = entity + 1
                self._ids = itertools.count(self._next_free)
        if parent is not None and self._parent.get(entity) != parent:
            if parent == entity or entity in self.ancestors(parent):
                raise ValueError(f"entity {parent} is {entity} or below it: not a parent")
            self.adopt(parent)
            undo = self._parent_undo
            if undo is not None and entity not in undo:  # (kept before the change)
                undo[entity] = self._parent.get(entity)
            old = self._parent.pop(entity, None)
            if old is not None and old in self._children:
                self._children[old].remove(entity)
            self._parent[entity] = parent
            self._children.setdefault(parent, []).append(entity)
            self._structure += 1
        return created

    def despawn(self, entity: EntityId) -> None:
        """Remove an entity, its components and (recursively) its children.

        Subscribers see ``DESPAWNED`` for each component, never ``REMOVED``.

        Raises:
            EntityNotFound: the entity does not exist.
        """
        self._components(entity)
        # Children before their parent, in spawn order (a post-order walk), without recursion:
        # hierarchies may be deeper than Python's stack. A right-to-left pre-order, reversed.
        order: list[EntityId] = []
        stack = [entity]
        while stack:
            current = stack.pop()
            order.append(current)
            stack.extend(self._children.get(current, ()))
        for current in reversed(order):
            self._despawn_one(current)

    def _despawn_one(self, entity: EntityId) -> None:
        undo = self._parent_undo
        if undo is not None and entity not in undo:  # (kept before the change)
            undo[entity] = self._parent.get(entity)
        if self._entity_undo is not None and entity not in self._entity_undo:
            self._entity_undo[entity] = PRESENT
        comps = self._entities.pop(entity)
        self._structure += 1
        parent = self._parent.pop(entity, None)
        if parent is not None and parent in self._children:
            self._children[parent].remove(entity)
        self._children.pop(entity, None)
        for model in comps:
            kind = self._kinds[model]
            undo = kind.undo
            if undo is not None and entity not in undo:  # (kept before the change)
                undo[entity] = kind.entries[entity]
            self._emit(kind, ChangeKind.DESPAWNED, entity, kind.entries.pop(entity))

    def contains(self, entity: EntityId) -> bool:
        """Whether the entity exists."""
        return entity in self._entities

    def entities(self) -> list[EntityId]:
        """Every live entity, in spawn order."""
        return list(self._entities)

    def parent(self, entity: EntityId) -> EntityId | None:
        """The entity's parent, if it has one."""
        self._components(entity)
        return self._parent.get(entity)

    def children(self, entity: EntityId) -> list[EntityId]:
        """The entity's direct children, in spawn order."""
        self._components(entity)
        return list(self._children.get(entity, ()))

    @property
    def next_id(self) -> EntityId:
        """The lowest id :meth:`spawn` may still hand out: every id below it is or was
        taken (by a spawn or an :meth:`adopt`) and is never handed out again."""
        return EntityId(self._next_free)

    def reserve_ids(self, below: EntityId) -> None:
        """Never hand out an id below ``below`` from now on (a World restored from a saved
        one keeps the ids its earlier life used: an id a client remembers never comes back
        meaning another entity)."""
        if below > self._next_free:
            self._next_free = int(below)
            self._ids = itertools.count(self._next_free)

    def change_count(self, model: type[BaseModel] | None = None) -> int:
        """How many changes of ``model`` components happened so far (inserts and updates
        that changed something, removals, despawns); with ``None``, how many spawns,
        despawns and moves of entities. Equal counts mean nothing changed in between (a
        state file skips a save that would write the same)."""
        if model is None:
            return self._structure
        kind = self._kinds.get(model)
        return 0 if kind is None else kind.changes

    def snapshot(self) -> WorldSnapshot:
        """The World as it is now, to read from another thread while it goes on changing
        (a save: see :class:`WorldSnapshot`). It takes no copy: until :meth:`release`, the
        first change of each entry, entity and parent keeps what it replaces (the World
        never changes an entry in place). One snapshot at a time.

        Raises:
            RuntimeError: a snapshot is being read already (release it first).
        """
        if self._snapshot is not None:
            raise RuntimeError("a World snapshot is being read already: release() it first")
        for kind in self._kinds.values():
            kind.undo = {}
        self._parent_undo = {}
        self._entity_undo = {}
        snap = self._snapshot = WorldSnapshot(self, EntityId(self._next_free))
        return snap

    def release(self, snapshot: WorldSnapshot) -> None:
        """``snapshot`` is no longer read: the World stops keeping what changes replace."""
        if self._snapshot is not snapshot:
            return
        self._snapshot = None
        self._parent_undo = self._entity_undo = None
        for kind in self._kinds.values():
            kind.undo = None

    def ancestors(self, entity: EntityId) -> Iterator[EntityId]:
        """The parent, its parent, ... up to the root."""
        current = self._parent.get(entity)
        while current is not None:
            yield current
            current = self._parent.get(current)

    # ------------------------------------------------------------------ components

    def insert(self, entity: EntityId, component: BaseModel) -> bool:
        """Add or replace the component of ``component``'s type on ``entity``.

        Returns:
            True if something changed (an equal value changes nothing and emits nothing).

        Raises:
            EntityNotFound: the entity does not exist.
            UnsupportedModel: ``component`` is not a pydantic model (a ``TypeError``).
            Exception: whatever a check set with :meth:`set_check` raised (the value is
                not stored).
        """
        model = component.__class__
        kind = self._kinds.get(model) or self._kind(model)
        if kind.check is not None:
            kind.check(component)
        entries = kind.entries
        old = entries.get(entity)
        entry: Any
        if type(old) is tuple:  # the hot path: an update of a FLAT value (kind.own() inlined)
            fields = component.__dict__
            n = kind.fields
            if len(fields) == n and len(component.__pydantic_fields_set__) == n:
                entry = tuple(fields.values())
                if entry == old:
                    return False
                undo = kind.undo
                if undo is not None and entity not in undo:
                    undo[entity] = old
                entries[entity] = entry
                kind.changes += 1
                for tracker in kind.trackers:  # ChangeTracker._record(entity, UPSERTED)
                    pending = tracker.pending
                    code = pending.get(entity)
                    if code is None:
                        pending[entity] = UPSERTED
                        if len(pending) == 1:
                            tracker.on_first()
                    elif code:
                        pending[entity] = code & WAS_REMOVED  # UPSERTED, keeping the removal
                subject = kind.subject
                if subject is not None and subject.observers:
                    subject.on_next(ComponentChange(ChangeKind.UPDATED, entity, kind.build(entry)))
                return True
        if old is not None:  # an update (the entity exists: it has this component)
            if kind.storage == _FLAT:
                if kind.same(old, component):
                    return False
                entry = kind.own(component)
            elif _equal(old, component):
                return False
            else:
                entry = kind.copy(component)
            undo = kind.undo
            if undo is not None and entity not in undo:
                undo[entity] = old
            entries[entity] = entry
            kind.changes += 1
            for tracker in kind.trackers:
                tracker._record(entity, UPSERTED)
            change = ChangeKind.UPDATED
        else:
            comps = self._entities.get(entity)
            if comps is None:
                raise EntityNotFound(
                    f"entity {entity} does not exist (never spawned, or despawned)"
                )
            entry = kind.own(component)
            comps[model] = None
            undo = kind.undo
            if undo is not None and entity not in undo:
                undo[entity] = ABSENT
            entries[entity] = entry
            kind.changes += 1
            for tracker in kind.trackers:
                tracker._record(entity, UPSERTED)
            change = ChangeKind.INSERTED
        subject = kind.subject
        if subject is not None and subject.observers:
            subject.on_next(ComponentChange(change, entity, kind.view(entry)))
        return True

    def insert_many(self, items: Iterable[tuple[EntityId, BaseModel]]) -> int:
        """Insert every ``(entity, component)`` pair, in order, as :meth:`insert` does (same
        changes, same errors: the pairs before a missing entity are inserted).

        Returns:
            How many pairs changed something.
        """
        insert = self.insert
        return sum(insert(entity, component) for entity, component in items)

    def update(self, entity: EntityId, model: type[C], /, **fields: Any) -> bool:
        """Set some fields of ``entity``'s ``model`` component, keeping the others: the
        values are validated as the model's own fields validate them (constraints,
        coercions, field validators), without building an instance when the model is stored
        flat (see :meth:`update_many`).

        Returns:
            True if something changed.

        Raises:
            KeyError: ``entity`` has no ``model`` component to update.
            EntityNotFound: the entity does not exist.
            pydantic.ValidationError: a value the model refuses (nothing changes).
            ValueError: a field the model does not have.
        """
        return self.update_many(model, ((entity, *fields.values()),), fields=tuple(fields)) > 0

    def update_many(
        self,
        model: type[C],
        rows: Iterable[Sequence[Any]],
        *,
        fields: Sequence[str] | None = None,
        trusted: bool = False,
    ) -> int:
        """Store many values of ``model`` from rows ``(entity, value, value, ...)``: the
        values of ``fields`` (default: every field, in the model's order), the fast path for
        values the server produces itself (a simulation, a driver's readings).

        For a model stored flat (all fields immutable; see the module docstring) that has no
        validation beyond its fields, the whole batch is validated in one call by a
        validator made from the model's own field schemas, and the validated values are
        stored as they are: no model instance is built. Any other model is built and
        validated per row. Either way the changes, their reports and the sync engine's view
        are those of :meth:`insert`.

        Rows of every field may add the component to an entity that lacks it; rows of some
        fields update an existing component and keep its other fields.

        Args:
            model: The component type.
            rows: ``(entity, *values)`` per change, values in ``fields`` order.
            fields: The fields the rows carry (default: all, in declaration order).
            trusted: Store the values without validating them (only for flat models; others
                are still validated). The values must then be exactly what validation would
                give (right types, within constraints): a wrong one is stored and sent to
                every client as it is. An explicit opt-in for hot loops whose values are
                known good.

        Returns:
            How many rows changed something (an equal value changes nothing).

        Raises:
            pydantic.ValidationError: a row the model refuses, named by its index and field
                (validation comes first: on a flat model none of the batch is stored).
            ValueError: a field the model does not have, or a row of the wrong length.
            KeyError: a row of some fields for an entity without the component (the rows
                before it are stored).
            EntityNotFound: a row for an entity that does not exist (the rows before it are
                stored).
        """
        kind = self._kinds.get(model) or self._kind(model)
        plan = kind.plans.get((fields if fields is None else tuple(fields), trusted))
        if plan is None:
            plan = kind.plan(None if fields is None else tuple(fields), trusted)
        validator, positions = plan
        if kind.storage != _FLAT or (validator is None and not trusted):
            return self._update_by_model(kind, rows, positions, trusted)
        batch: Any = rows if isinstance(rows, list) else list(rows)
        if validator is not None:
            try:
                batch = validator.validate_python(batch)
            except ValidationError as exc:
                names = kind.names if positions is None else [kind.names[p] for p in positions]
                raise named_errors(exc, model, names) from None
        else:
            width = 1 + (kind.fields if positions is None else len(positions))
            for index, row in enumerate(batch):
                if len(row) != width:
                    raise ValueError(
                        f"row {index} has {len(row)} items; {model.__name__} rows carry "
                        f"{width} (the entity, then the values)"
                    )
        subject = kind.subject
        if (
            positions is None
            and kind.check is None
            and kind.undo is None
            and len(kind.trackers) <= 1
            and (subject is None or not subject.observers)
        ):
            return self._update_rows_plain(kind, batch, validator is not None)
        entries = kind.entries
        check = kind.check
        trackers = kind.trackers
        changed = 0
        for row in batch:
            entity = row[0]
            old = entries.get(entity)
            if positions is None:
                entry = tuple(row[1:])
            else:
                if old is None:
                    self._components(entity)  # (raises EntityNotFound first)
                    raise KeyError(
                        f"entity {entity} has no {model.__name__} to update (rows of some "
                        "fields need one; insert it first, or give every field)"
                    )
                merged = list(entry_fields(old))
                for position, value in zip(positions, row[1:], strict=True):
                    merged[position] = value
                entry = tuple(merged)
            if old is not None and type(old) is tuple and entry == old:
                continue
            if check is not None:
                check(kind.build(entry))
            undo = kind.undo
            if old is None:
                comps = self._entities.get(entity)
                if comps is None:
                    raise EntityNotFound(
                        f"entity {entity} does not exist (never spawned, or despawned)"
                    )
                comps[model] = None
                if undo is not None and entity not in undo:
                    undo[entity] = ABSENT
                change = ChangeKind.INSERTED
            else:
                if type(old) is not tuple and entry == entry_fields(old):
                    continue
                if undo is not None and entity not in undo:
                    undo[entity] = old
                change = ChangeKind.UPDATED
            entries[entity] = entry
            kind.changes += 1
            changed += 1
            for tracker in trackers:  # ChangeTracker._record(entity, UPSERTED), inlined
                pending = tracker.pending
                code = pending.get(entity)
                if code is None:
                    pending[entity] = UPSERTED
                    if len(pending) == 1:
                        tracker.on_first()
                elif code:
                    pending[entity] = code & WAS_REMOVED
            subject = kind.subject
            if subject is not None and subject.observers:
                subject.on_next(ComponentChange(change, entity, kind.build(entry)))
        return changed

    def _update_rows_plain(self, kind: _Kind, batch: Any, tuples: bool = False) -> int:
        """:meth:`update_many`'s usual case, with what the general loop asks per row asked
        once: rows of every field of a flat type, no check, no snapshot being read, at most
        one tracker (the sync engine's), nobody observing the type's changes. ``tuples``:
        every row is a tuple (validated rows are)."""
        model = kind.model
        entries = kind.entries
        entities = self._entities
        tracker = kind.trackers[0] if kind.trackers else None
        pending = tracker.pending if tracker is not None else None
        changed = 0
        try:
            for row in batch:
                entity = row[0]
                entry = row[1:] if tuples else tuple(row[1:])  # (trusted rows may be lists)
                old = entries.get(entity)
                if old is None:
                    comps = entities.get(entity)
                    if comps is None:
                        raise EntityNotFound(
                            f"entity {entity} does not exist (never spawned, or despawned)"
                        )
                    comps[model] = None
                elif type(old) is tuple:
                    if entry == old:
                        continue
                elif entry == entry_fields(old):
                    continue
                entries[entity] = entry
                changed += 1
                if pending is not None:  # ChangeTracker._record(entity, UPSERTED), inlined
                    code = pending.get(entity)
                    if code is None:
                        pending[entity] = UPSERTED
                        if len(pending) == 1:
                            assert tracker is not None
                            tracker.on_first()
                            pending = tracker.pending  # (in case it drained)
                    elif code:
                        pending[entity] = code & WAS_REMOVED
        finally:
            kind.changes += changed
        return changed

    def _update_by_model(
        self,
        kind: _Kind,
        rows: Iterable[Sequence[Any]],
        positions: tuple[int, ...] | None,
        trusted: bool,
    ) -> int:
        """:meth:`update_many` for models that are not stored flat, or that validate more
        than their fields: each row's value is built (validated unless ``trusted``) and
        inserted."""
        model = kind.model
        names = kind.names if positions is None else tuple(kind.names[p] for p in positions)
        changed = 0
        for index, row in enumerate(rows):
            if len(row) != 1 + len(names):
                raise ValueError(
                    f"row {index} has {len(row)} items; {model.__name__} rows carry "
                    f"{1 + len(names)} (the entity, then the values)"
                )
            entity = row[0]
            values = dict(zip(names, row[1:], strict=True))
            if positions is not None:
                current = self.get(entity, model)
                if current is None:
                    self._components(entity)
                    raise KeyError(
                        f"entity {entity} has no {model.__name__} to update (rows of some "
                        "fields need one; insert it first, or give every field)"
                    )
                values = {**current.__dict__, **values}
            value = model.model_construct(**values) if trusted else model.model_validate(values)
            changed += self.insert(entity, value)
        return changed

    def remove(self, entity: EntityId, model: type[C]) -> C | None:
        """Remove the ``model`` component from ``entity``; the entity lives on.

        Returns:
            The removed value, or ``None`` if the entity did not have one.

        Raises:
            EntityNotFound: the entity does not exist.
        """
        comps = self._components(entity)
        if model not in comps:
            return None
        del comps[model]
        kind = self._kinds[model]
        undo = kind.undo
        if undo is not None and entity not in undo:  # (kept before the change)
            undo[entity] = kind.entries[entity]
        entry = kind.entries.pop(entity)
        self._emit(kind, ChangeKind.REMOVED, entity, entry)
        result: C = kind.view(entry)
        return result

    def get(self, entity: EntityId, model: type[C]) -> C | None:
        """A copy of the entity's ``model`` component, or ``None``.

        Raises:
            EntityNotFound: the entity does not exist.
        """
        if model not in self._components(entity):
            return None
        kind = self._kinds[model]
        result: C = kind.view(kind.entries[entity])
        return result

    def component_types(self, entity: EntityId) -> Iterable[type[BaseModel]]:
        """The types of the entity's components (none for a missing entity), as a live view:
        do not change the entity while iterating."""
        comps = self._entities.get(entity)
        return comps.keys() if comps is not None else ()

    def has(self, entity: EntityId, model: type[BaseModel]) -> bool:
        """Whether the entity exists and has a ``model`` component."""
        comps = self._entities.get(entity)
        return comps is not None and model in comps

    def components_of(self, entity: EntityId) -> list[BaseModel]:
        """Copies of all of the entity's components."""
        kinds = self._kinds
        return [kinds[m].view(kinds[m].entries[entity]) for m in self._components(entity)]

    def query(self, model: type[C]) -> Iterator[tuple[EntityId, C]]:
        """``(entity, copy of value)`` for every entity with a ``model`` component."""
        kind = self._kinds.get(model)
        if kind is None:
            return
        for entity, entry in list(kind.entries.items()):
            yield entity, kind.view(entry)

    def count(self, model: type[BaseModel]) -> int:
        """How many entities have a ``model`` component."""
        return len(self._entries(model))

    def peek(self, model: type[BaseModel]) -> dict[EntityId, Any]:
        """The stored entries of ``model``, not copied: read-only access for the sync engine.

        An entry is either a tuple of the field values in field order (most values of models
        whose fields are all immutable) or a model instance; :func:`entry_fields` and
        :meth:`entry_value` read both. Mutating anything from this mapping corrupts change
        tracking; use :meth:`query`.
        """
        return self._entries(model)

    def entry_value(self, model: type[C], entry: Any) -> C:
        """A model instance for a :meth:`peek` entry (read-only: it may be the stored one)."""
        value: C = self._kinds[model].build(entry) if type(entry) is tuple else entry  # type: ignore[assignment]
        return value

    @contextmanager
    def modify(self, entity: EntityId, model: type[C]) -> Iterator[C]:
        """Edit a component in place; one change is emitted on exit (none if unchanged).

        Raises:
            EntityNotFound: the entity does not exist.
            KeyError: the entity has no ``model`` component.
        """
        value = self.get(entity, model)
        if value is None:
            raise KeyError(f"entity {entity} has no {model.__name__} component")
        draft = value.model_copy(deep=True)
        yield draft
        if self.contains(entity):
            self.insert(entity, draft)

    def set_check(self, model: type[C], check: Callable[[C], None] | None) -> None:
        """Call ``check(value)`` with every value of ``model`` about to be stored (by
        :meth:`insert`, :meth:`spawn`, :meth:`modify`, :meth:`drive`); an exception it raises
        refuses the value and reaches the caller, and nothing changes. ``None`` removes it.
        (The sync server checks the encoded size of synced values this way.)"""
        self._kind(model).check = cast(Callable[[BaseModel], None] | None, check)

    def changes(self, model: type[C]) -> reactivex.Observable[ComponentChange[C]]:
        """An Observable of every change of ``model`` components, in order.

        Values are copies. A subscriber that raises is detached (its ``on_error`` gets the
        exception); the World and the other subscribers carry on.
        """
        kind = self._kind(model)
        if kind.subject is None:
            kind.subject = SafeSubject()
        return kind.subject

    def drive(self, entity: EntityId, source: reactivex.Observable[C]) -> rx_abc.DisposableBase:
        """Insert every value ``source`` emits into ``entity`` (e.g. a sensor stream).

        Values that arrive after the entity was despawned are ignored. Dispose the result to
        stop.
        """

        def on_next(value: C) -> None:
            if self.contains(entity):
                self.insert(entity, value)

        def on_error(error: Exception) -> None:
            logger.warning("the stream driving entity %s failed: %s", entity, error)

        return source.subscribe(on_next=on_next, on_error=on_error)

    def drive_rows(
        self,
        model: type[BaseModel],
        source: reactivex.Observable[Sequence[Sequence[Any]]],
        *,
        fields: Sequence[str] | None = None,
        trusted: bool = False,
    ) -> rx_abc.DisposableBase:
        """Store every batch of rows ``source`` emits with :meth:`update_many` (e.g. a
        driver's readings of many sensors at once, without a model instance per reading).

        A batch that fails (a refused value, a despawned entity) is logged and skipped; the
        stream goes on. Dispose the result to stop.
        """
        update_many = self.update_many

        def on_next(rows: Sequence[Sequence[Any]]) -> None:
            try:
                update_many(model, rows, fields=fields, trusted=trusted)
            except (ValueError, KeyError) as exc:  # (ValidationError and EntityNotFound too)
                logger.warning("a batch of %s rows was refused: %s", model.__name__, exc)

        def on_error(error: Exception) -> None:
            logger.warning("the stream driving %s rows failed: %s", model.__name__, error)

        return source.subscribe(on_next=on_next, on_error=on_error)
