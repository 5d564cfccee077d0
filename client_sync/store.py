"""The replica: applies the server's SYNC frames to typed per-subscription views. No I/O."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from pl3xus_rx.exceptions import FrameError, Pl3xusError
from pl3xus_rx.protocol import from_wire

__all__ = ["ReplicaChange", "ReplicaChangeKind", "SequenceGap", "Store"]

FLAG_SNAPSHOT = 1
FLAG_COMPLETE = 2
FLAG_CONTINUED = 4
SYNC_KIND = 5


class SequenceGap(Pl3xusError):
    """A SYNC frame's sequence number skipped; the replica asks for fresh snapshots."""


class ReplicaChangeKind(enum.Enum):
    """What happened to one entity in one subscription's view."""

    INSERTED = "inserted"
    UPDATED = "updated"
    REMOVED = "removed"
    DESPAWNED = "despawned"


@dataclass(frozen=True, slots=True)
class ReplicaChange:
    """One change applied to a view."""

    subscription: int
    kind: ReplicaChangeKind
    entity: int
    value: BaseModel | None


@dataclass
class _View:
    model: type[BaseModel]
    fields: tuple[str, ...]
    entity: int | None
    values: dict[int, BaseModel]
    name: str = ""
    complete: bool = False
    adapter: TypeAdapter[list[Any]] | None = None
    # while a snapshot arrives in several groups: the entities held before it began that
    # have not been seen since (removed when the snapshot completes)
    unseen: set[int] | None = None


class Store:
    """Per-subscription replicas of server state, fed with decoded SYNC frames.

    Args:
        components: The welcome's component table: ``[[type_id, name, hash, fields], ...]``.
    """

    def __init__(self, components: list[list[Any]]) -> None:
        self._fields = {row[1]: tuple(row[3]) for row in components}
        self._views: dict[int, _View] = {}
        self._adapters: dict[type[BaseModel], TypeAdapter[list[Any]]] = {}
        self._seq = 0

    def add_subscription(
        self, sub_id: int, name: str, model: type[BaseModel], entity: int | None = None
    ) -> None:
        """Start a view for subscription ``sub_id`` of component ``name``.

        Raises:
            KeyError: the server does not sync ``name``.
        """
        adapter = self._adapters.get(model)
        if adapter is None:
            adapter = self._adapters[model] = TypeAdapter(list[model])  # type: ignore[valid-type]
        self._views[sub_id] = _View(model, self._fields[name], entity, {}, name, adapter=adapter)

    def remove_subscription(self, sub_id: int) -> None:
        """Drop a view."""
        self._views.pop(sub_id, None)

    def view(self, sub_id: int) -> Mapping[int, BaseModel]:
        """The current values of a subscription, by entity."""
        return self._views[sub_id].values

    def complete(self, sub_id: int) -> bool:
        """Whether the subscription's snapshot has fully arrived."""
        return self._views[sub_id].complete

    def reset_sequence(self) -> None:
        """Forget the last sequence number (a new connection starts again at 1)."""
        self._seq = 0

    def rebind(self, components: list[list[Any]]) -> None:
        """Take a new welcome's component table (after a reconnect); views are kept, to be
        reconciled by the snapshots that follow, and the sequence starts again."""
        self._fields = {row[1]: tuple(row[3]) for row in components}
        for view in self._views.values():
            if view.name in self._fields:
                view.fields = self._fields[view.name]
        self._seq = 0

    def knows(self, name: str) -> bool:
        """Whether the server's welcome listed component ``name``."""
        return name in self._fields

    def apply(self, frame: list[Any]) -> list[ReplicaChange]:
        """Apply one decoded SYNC frame; returns what changed, in order.

        Raises:
            SequenceGap: a frame is missing (the caller should ask for fresh snapshots).
            FrameError: the frame is malformed.
        """
        if len(frame) != 3 or frame[0] != SYNC_KIND or not isinstance(frame[2], list):
            raise FrameError("a SYNC frame must be [5, seq, groups]")
        seq = frame[1]
        if seq != self._seq + 1:
            expected = self._seq + 1
            self._seq = seq
            raise SequenceGap(f"SYNC sequence jumped from {expected - 1} to {seq}")
        self._seq = seq
        changes: list[ReplicaChange] = []
        for group in frame[2]:
            sub_id, flags, upserts, removals, despawns = group
            view = self._views.get(sub_id)
            if view is None:
                continue  # unsubscribed while the frame was in flight
            values = view.values
            if flags & FLAG_SNAPSHOT:
                fresh = dict(self._decode_many(view, upserts))
                if not flags & FLAG_CONTINUED:  # a snapshot begins
                    view.unseen = set(values)
                    view.complete = False
                unseen = view.unseen
                if unseen is not None:  # (None: the rest of a snapshot that was restarted)
                    unseen.difference_update(fresh)
                if flags & FLAG_COMPLETE and unseen is not None:  # the rest is gone
                    for entity in [e for e in values if e in unseen]:
                        changes.append(
                            ReplicaChange(
                                sub_id, ReplicaChangeKind.REMOVED, entity, values.pop(entity)
                            )
                        )
                    view.unseen = None
                    view.complete = True
                for entity, value in fresh.items():
                    old = values.get(entity)
                    if old != value:
                        kind = (
                            ReplicaChangeKind.INSERTED if old is None else ReplicaChangeKind.UPDATED
                        )
                        values[entity] = value
                        changes.append(ReplicaChange(sub_id, kind, entity, value))
                continue
            unseen = view.unseen
            for entity in removals:
                old = values.pop(entity, None)
                if old is not None:
                    changes.append(ReplicaChange(sub_id, ReplicaChangeKind.REMOVED, entity, old))
            for entity, value in self._decode_many(view, upserts):
                kind = ReplicaChangeKind.UPDATED if entity in values else ReplicaChangeKind.INSERTED
                values[entity] = value
                changes.append(ReplicaChange(sub_id, kind, entity, value))
                if unseen is not None:
                    unseen.discard(entity)  # a live value: the snapshot need not mention it
            for entity in despawns:
                old = values.pop(entity, None)
                if old is not None:
                    changes.append(ReplicaChange(sub_id, ReplicaChangeKind.DESPAWNED, entity, old))
        return changes

    def _decode_many(self, view: _View, upserts: list[Any]) -> list[tuple[int, BaseModel]]:
        # Full values are validated in one call (several times faster than one by one);
        # field deltas need the current value, so they go one by one.
        fields = view.fields
        out: list[tuple[int, BaseModel] | None] = [None] * len(upserts)
        batch_index: list[int] = []
        batch: list[dict[str, Any]] = []
        for i, (entity, vals) in enumerate(upserts):
            if type(vals) is list and len(vals) == len(fields):
                batch_index.append(i)
                batch.append(dict(zip(fields, vals, strict=True)))
            else:
                out[i] = (entity, self._decode(view, entity, vals))
        if batch:
            assert view.adapter is not None
            try:
                models = view.adapter.validate_python(batch, by_alias=False, by_name=True)
            except ValidationError:
                for i in batch_index:  # find the bad one and say which it is
                    out[i] = (upserts[i][0], self._decode(view, upserts[i][0], upserts[i][1]))
            else:
                for i, model in zip(batch_index, models, strict=True):
                    out[i] = (upserts[i][0], model)
        return [item for item in out if item is not None]

    def _decode(self, view: _View, entity: int, vals: Any) -> BaseModel:
        if isinstance(vals, dict):  # a field delta: {field index: value}
            current = view.values.get(entity)
            if current is None:
                raise FrameError(
                    f"field delta for entity {entity}, which this {view.model.__name__} view "
                    "does not hold",
                    type_name=view.model.__name__,
                )
            base = {name: getattr(current, name) for name in view.fields}
            for index, value in vals.items():
                base[view.fields[int(index)]] = value
            data = base
        elif isinstance(vals, list) and len(vals) == len(view.fields):
            data = dict(zip(view.fields, vals, strict=True))
        else:
            raise FrameError(
                f"{view.model.__name__} of entity {entity}: expected {len(view.fields)} field "
                f"values {list(view.fields)}, got {vals!r:.80}",
                type_name=view.model.__name__,
            )
        try:
            return from_wire(view.model, data)
        except ValidationError as exc:
            raise FrameError(
                f"{view.model.__name__} of entity {entity} failed validation: "
                f"{exc.errors()[0]['msg']}",
                type_name=view.model.__name__,
            ) from exc
