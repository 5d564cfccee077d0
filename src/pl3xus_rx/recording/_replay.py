"""A World driven from a recording: seek to any instant, play forward. No I/O.

:class:`Replayer` turns records back into World changes, the way a gateway's World is
driven from its authority's batches. Playing forward applies each BATCH in turn; a seek
builds the recorded state at the instant (the last keyframe before it, then the batches
up to it, conflated) and brings the World to it with the fewest changes: only what differs
is inserted, removed or despawned, so connected clients receive one flush's worth of
differences, not a replay of the minutes between.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..protocol import RecordedState, Recording, RecordKind, from_wire
from ..protocol._recording import gc_paused
from ..sync._registry import ComponentRegistration, ComponentRegistry
from ..world import EntityId, World, entry_fields

__all__ = ["Replayer"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Type:
    reg: ComponentRegistration[Any]
    names: tuple[str, ...]
    same_fields: bool  # the recorded fields are the model's, in its order


class Replayer:
    """Drives ``world`` from ``recording``: the types both know (by wire name) are replayed;
    the others are left out, each named once in the log.

    Args:
        recording: What to play.
        world: The World to drive (a replay server's; nothing else should change it).
        registry: The synced types of the World's server.
    """

    def __init__(self, recording: Recording, world: World, registry: ComponentRegistry) -> None:
        self.recording = recording
        self.world = world
        self._types: dict[int, _Type] = {}
        self.missing: list[str] = []
        """Recorded types the server does not sync (left out)."""
        self.differing: list[str] = []
        """Recorded types whose schema hash differs from the server's (replayed by field
        name; values that no longer validate are left out)."""
        for index, recorded in enumerate(recording.header.types):
            reg = registry.by_name(recorded.name)
            if reg is None:
                self.missing.append(recorded.name)
                continue
            if reg.schema_hash != recorded.hash:
                self.differing.append(recorded.name)
            self._types[index] = _Type(reg, recorded.fields, recorded.fields == tuple(reg.fields))
        if self.missing:
            shown_missing = ", ".join(self.missing[:20])
            more = f" and {len(self.missing) - 20} more" if len(self.missing) > 20 else ""
            logger.warning(
                "%s: %s%s not synced by this server: left out", recording.name, shown_missing, more
            )
        if self.differing:
            logger.warning(
                "%s: %s changed shape since recorded: replayed by field name",
                recording.name,
                self.differing,
            )
        self.position = recording.start
        """The instant the World shows (recording time)."""
        self.invalid = 0
        """Recorded values left out because they do not validate against today's type."""
        self.bad_records = 0
        """BATCH records left out while playing: they do not decode or have the wrong
        shape (the first ten are logged)."""
        self._next = 0  # the first record not applied
        self._logged: set[str] = set()

    @property
    def start(self) -> float:
        """The first instant that can be shown."""
        return self.recording.start

    @property
    def end(self) -> float:
        """The last recorded instant."""
        return self.recording.end

    def seek(self, time: float) -> None:
        """Show the recorded state at ``time`` (clamped to the recording)."""
        time = min(max(time, self.start), self.end)
        state, self._next = self.recording.state_at(time)
        with gc_paused():
            self._reconcile(state)
        self.position = time

    def advance(self, time: float) -> int:
        """Play forward to ``time`` (clamped to the end): every BATCH recorded after the
        position and at or before ``time``, in order. Returns how many were applied."""
        time = min(time, self.end)
        if time < self.position:
            self.seek(time)
            return 0
        recording = self.recording
        stop = recording.after(time)
        applied = 0
        for index in range(self._next, stop):
            if recording.kinds[index] == RecordKind.BATCH:
                try:
                    self._batch(recording.body(index))
                except (ValueError, TypeError, KeyError) as exc:
                    self._bad(index, exc)  # (the rest plays on)
                    continue
                applied += 1
        self._next = max(self._next, stop)
        self.position = time
        return applied

    # ------------------------------------------------------------------ applying

    def _bad(self, index: int, exc: Exception) -> None:
        self.bad_records += 1
        if self.bad_records <= 10:  # (a crafted file may hold millions)
            logger.warning(
                "%s: record %d is left out: %s: %s",
                self.recording.name,
                index,
                type(exc).__name__,
                exc,
            )

    def _value(self, kind: _Type, entity: int, fields: Any) -> BaseModel | None:
        try:
            value: BaseModel = from_wire(
                kind.reg.model, dict(zip(kind.names, fields, strict=False))
            )
            return value
        except (ValidationError, TypeError, ValueError) as exc:
            self.invalid += 1
            if kind.reg.name not in self._logged:
                self._logged.add(kind.reg.name)
                logger.warning(
                    "%s: a recorded %s (entity %s) does not validate and is left out "
                    "(logged once per type): %s",
                    self.recording.name,
                    kind.reg.name,
                    entity,
                    exc,
                )
            return None

    def _batch(self, body: Any) -> None:
        world = self.world
        born, types = body
        for entity, parent in born:
            self._adopt(_id(entity), None if parent is None else _id(parent))
        for index, items, removed, despawned in types:
            kind = self._types.get(index)
            if kind is None:
                continue
            for entity, fields in items:
                value = self._value(kind, entity, fields)
                if value is not None:
                    self._adopt(_id(entity), None)
                    world.insert(_id(entity), value)
            for entity in removed:
                if world.contains(_id(entity)):
                    world.remove(_id(entity), kind.reg.model)
            for entity in despawned:
                if world.contains(_id(entity)):
                    world.despawn(_id(entity))

    def _adopt(self, entity: EntityId, parent: EntityId | None) -> None:
        try:
            self.world.adopt(entity, parent)
        except ValueError as exc:  # (a parent below its child: the record is wrong)
            logger.warning("%s: entity %s: %s", self.recording.name, entity, exc)

    def _reconcile(self, state: RecordedState) -> None:
        world = self.world
        parents = {e: p for e, p in state.parents.items() if _valid(e) and (p is None or _valid(p))}
        for entity in world.entities():
            if entity not in parents and world.contains(entity):
                world.despawn(entity)
        for entity, parent in parents.items():
            # (most entities exist already under the same parent: nothing to do for them)
            if not world.contains(EntityId(entity)) or world.parent(EntityId(entity)) != parent:
                self._adopt(EntityId(entity), None if parent is None else EntityId(parent))
        for index, kind in self._types.items():
            model = kind.reg.model
            table = state.values.get(index, {})
            peek = world.peek(model)
            for entity in [e for e in peek if e not in table]:
                world.remove(entity, model)
            compare = kind.same_fields and kind.reg.json_native
            for entity, fields in table.items():
                if not _valid(entity):
                    self.invalid += 1
                    continue
                if compare:
                    entry = peek.get(EntityId(entity))
                    if entry is not None and tuple(entry_fields(entry)) == tuple(fields):
                        continue
                value = self._value(kind, entity, fields)
                if value is not None:
                    if not world.contains(EntityId(entity)):
                        self._adopt(EntityId(entity), None)
                    world.insert(EntityId(entity), value)


def _valid(entity: Any) -> bool:
    return type(entity) is int and entity >= 0


def _id(entity: Any) -> EntityId:
    """A recorded entity id, checked.

    Raises:
        ValueError: it is not a non-negative integer.
    """
    if type(entity) is not int or entity < 0:
        raise ValueError(f"an entity id that is not a non-negative integer: {entity!r:.40}")
    return EntityId(entity)
