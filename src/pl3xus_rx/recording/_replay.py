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
from collections.abc import Sequence
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
            reg = next((r for r in registry if r.name == recorded.name), None)
            if reg is None:
                self.missing.append(recorded.name)
                continue
            if reg.schema_hash != recorded.hash:
                self.differing.append(recorded.name)
            self._types[index] = _Type(reg, recorded.fields, recorded.fields == tuple(reg.fields))
        if self.missing:
            logger.warning(
                "%s: %s not synced by this server: left out", recording.name, self.missing
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
                self._batch(recording.body(index))
                applied += 1
        self._next = max(self._next, stop)
        self.position = time
        return applied

    # ------------------------------------------------------------------ applying

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
            self._adopt(EntityId(entity), None if parent is None else EntityId(parent))
        for index, items, removed, despawned in types:
            kind = self._types.get(index)
            if kind is None:
                continue
            for entity, fields in items:
                value = self._value(kind, entity, fields)
                if value is not None:
                    self._adopt(EntityId(entity), None)
                    world.insert(EntityId(entity), value)
            for entity in removed:
                if world.contains(EntityId(entity)):
                    world.remove(EntityId(entity), kind.reg.model)
            for entity in despawned:
                if world.contains(EntityId(entity)):
                    world.despawn(EntityId(entity))

    def _adopt(self, entity: EntityId, parent: EntityId | None) -> None:
        try:
            self.world.adopt(entity, parent)
        except ValueError as exc:  # (a parent below its child: the record is wrong)
            logger.warning("%s: entity %s: %s", self.recording.name, entity, exc)

    def _reconcile(self, state: RecordedState) -> None:
        world = self.world
        parents = state.parents
        for entity in world.entities():
            if entity not in parents and world.contains(entity):
                world.despawn(entity)
        for entity, parent in parents.items():
            self._adopt(EntityId(entity), None if parent is None else EntityId(parent))
        for index, kind in self._types.items():
            model = kind.reg.model
            table = state.values.get(index, {})
            peek = world.peek(model)
            for entity in [e for e in peek if e not in table]:
                world.remove(entity, model)
            compare = kind.same_fields and kind.reg.json_native
            for entity, fields in table.items():
                if compare:
                    entry = peek.get(EntityId(entity))
                    if entry is not None and _same(entry, fields):
                        continue
                value = self._value(kind, entity, fields)
                if value is not None:
                    self._adopt(EntityId(entity), None)
                    world.insert(EntityId(entity), value)


def _same(entry: Any, fields: Sequence[Any]) -> bool:
    values = entry_fields(entry)
    return len(values) == len(fields) and all(a == b for a, b in zip(values, fields, strict=True))
