"""The replica: applies the server's SYNC frames to typed per-subscription views. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from pl3xus_rx.exceptions import FrameError, SequenceGap
from pl3xus_rx.protocol import ChangeKind, FrameKind, SyncFlag, from_wire

__all__ = ["ReplicaChange", "ReplicaChangeKind", "SequenceGap", "Store"]


ReplicaChangeKind = ChangeKind
"""What happened to one entity in one subscription's view (the protocol's
:class:`~pl3xus_rx.protocol.ChangeKind`)."""


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


def _check_group(group: Any) -> None:
    """Refuse a group whose shape is wrong (garbage, not a value this end rejects)."""
    if not (isinstance(group, list) and len(group) == 5):
        raise FrameError("a SYNC group must be [sub_id, flags, upserts, removals, despawns]")
    sub_id, flags, upserts, removals, despawns = group
    if type(sub_id) is not int or type(flags) is not int:
        raise FrameError("a SYNC group's sub_id and flags must be integers")
    if not isinstance(upserts, list):
        raise FrameError("a SYNC group's upserts must be a list")  # items: see _decode_many
    for ids in (removals, despawns):
        if not (isinstance(ids, list) and all(type(e) is int for e in ids)):
            raise FrameError(f"removals and despawns must be lists of entity ids, got {ids!r:.60}")


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
        self.rejected: list[FrameError] = []
        """Values left out of the views since the caller last cleared this list: each error
        names the entity, the type and what failed (see :meth:`apply`)."""

    def add_subscription(
        self, sub_id: int, name: str, model: type[BaseModel], entity: int | None = None
    ) -> None:
        """Start a view for subscription ``sub_id`` of component ``name``. If the server
        does not sync ``name``, the view stays empty and counts as complete (nothing will
        come) until a welcome that lists it."""
        adapter = self._adapters.get(model)
        if adapter is None:
            adapter = self._adapters[model] = TypeAdapter(list[model])  # type: ignore[valid-type]
        fields = self._fields.get(name)
        self._views[sub_id] = _View(
            model, fields or (), entity, {}, name, complete=fields is None, adapter=adapter
        )

    def give_up(self, sub_id: int) -> None:
        """The server refused subscription ``sub_id``: nothing will come for it (its view
        counts as complete, and keeps what it held)."""
        view = self._views.get(sub_id)
        if view is not None:
            view.complete = True
            view.unseen = None

    def remove_subscription(self, sub_id: int) -> None:
        """Drop a view."""
        self._views.pop(sub_id, None)

    def view(self, sub_id: int) -> Mapping[int, BaseModel]:
        """The current values of a subscription, by entity."""
        return self._views[sub_id].values

    def complete(self, sub_id: int) -> bool:
        """Whether the subscription's snapshot has fully arrived."""
        return self._views[sub_id].complete

    @property
    def seq(self) -> int:
        """The sequence number of the last SYNC frame taken in (0: none on this
        connection)."""
        return self._seq

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
        self.expect_snapshots()

    def expect_snapshots(self) -> None:
        """Mark every view incomplete until its next snapshot completes (after a RESYNC or
        on a new connection)."""
        for view in self._views.values():
            view.complete = False

    def knows(self, name: str) -> bool:
        """Whether the server's welcome listed component ``name``."""
        return name in self._fields

    def apply(self, frame: list[Any]) -> list[ReplicaChange]:
        """Apply one decoded SYNC frame; returns what changed, in order.

        A value this end's model rejects (a validator the server does not have, a field delta
        for an entity the view does not hold) cannot be fixed by a fresh snapshot: it is left
        out of the view (an older value of that entity is removed, reported as REMOVED) and
        its error is appended to :attr:`rejected`; the rest of the frame applies.

        Raises:
            SequenceGap: a frame is missing (the caller should ask for fresh snapshots).
            FrameError: the frame is malformed.
        """
        if len(frame) not in (3, 5) or frame[0] != FrameKind.SYNC or not isinstance(frame[2], list):
            raise FrameError("a SYNC frame must be [5, seq, groups] (v2: [..., as_of, age])")
        for group in frame[2]:
            _check_group(group)
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
            decoded, rejected = self._decode_many(view, upserts)
            for entity in rejected:
                if view.unseen is not None:
                    view.unseen.discard(entity)
                old = values.pop(entity, None)
                if old is not None:
                    changes.append(ReplicaChange(sub_id, ReplicaChangeKind.REMOVED, entity, old))
            if flags & SyncFlag.SNAPSHOT:
                fresh = dict(decoded)
                if not flags & SyncFlag.CONTINUED:  # a snapshot begins
                    view.unseen = set(values)
                    view.complete = False
                unseen = view.unseen
                if unseen is not None:  # (None: the rest of a snapshot that was restarted)
                    unseen.difference_update(fresh)
                if flags & SyncFlag.COMPLETE and unseen is not None:  # the rest is gone
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
            for entity, value in decoded:
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

    def _decode_many(
        self, view: _View, upserts: list[Any]
    ) -> tuple[list[tuple[int, BaseModel]], list[int]]:
        """The upserts' values, and the entities whose value was rejected (recorded)."""
        # Full values are validated in one call (several times faster than one by one);
        # field deltas need the current value, so they go one by one.
        fields = view.fields
        out: list[tuple[int, BaseModel] | None] = [None] * len(upserts)
        rejected: list[int] = []
        batch_index: list[int] = []
        batch: list[dict[str, Any]] = []

        def one(i: int) -> None:
            entity, vals = upserts[i]
            try:
                out[i] = (entity, self._decode(view, entity, vals))
            except FrameError as exc:
                rejected.append(entity)
                self.rejected.append(exc)

        try:
            pairs = [(entity, vals) for entity, vals in upserts]
        except (TypeError, ValueError) as exc:
            raise FrameError(f"an upsert must be [entity, values]: {exc}") from exc
        for i, (_entity, vals) in enumerate(pairs):
            if type(vals) is list and len(vals) == len(fields):
                batch_index.append(i)
                batch.append(dict(zip(fields, vals, strict=True)))
            else:
                one(i)
        if batch:
            assert view.adapter is not None
            try:
                models = view.adapter.validate_python(batch, by_alias=False, by_name=True)
            except ValidationError:
                for i in batch_index:  # find the bad ones and say which they are
                    one(i)
            else:
                for i, model in zip(batch_index, models, strict=True):
                    out[i] = (upserts[i][0], model)
        return [item for item in out if item is not None], rejected

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
            try:
                for index, value in vals.items():
                    base[view.fields[int(index)]] = value
            except (ValueError, TypeError, IndexError) as exc:
                raise FrameError(
                    f"{view.model.__name__} of entity {entity}: bad field delta {vals!r:.80} "
                    f"({len(view.fields)} fields)",
                    type_name=view.model.__name__,
                ) from exc
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
