"""Entries to bytes: how the sync engine encodes the items of its SYNC groups. No I/O.

One route per kind of item:

- a **full** item ``[entity, [field values...]]``: :meth:`ItemEncoder.full`, for change
  groups and snapshots alike. An encoding is kept across flushes while the stored entry it
  was made from is current (the World replaces an entry object on every change, so "same
  object" means "same value"): a later snapshot of unchanged entities costs a lookup each.
  A group of plain upserts of a JSON-native type goes out in one encoder call instead
  (:meth:`ItemEncoder.full_batch`), unless some of its items were already encoded this flush.
- a **delta** item ``[entity, {field index: value}]``: :meth:`ItemEncoder.delta`.

Each item is encoded at most once per flush and encoding, whatever the number of
subscribers; :attr:`ItemEncoder.encodings` counts them.

A value that cannot be encoded (server code stored a string with a lone surrogate, say) is
left out for that entity alone: logged once per entity and type, counted in
:attr:`ItemEncoder.unencodable`, and the rest of the flush goes out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from ..exceptions import ValueTooLarge
from ..protocol import to_wire
from ..world import FINAL, UPSERTED, EntityId, World, entry_fields
from ._registry import ComponentRegistration
from ._wire import Group, encode_item_json, encode_item_msgpack, encode_items


def _check_text(data: str) -> None:
    """JSON text must be sendable as UTF-8 (a lone surrogate is not)."""
    if not data.isascii():
        data.encode()  # raises UnicodeEncodeError (a ValueError)


def _encode_item_json(item: Any) -> str:
    data = encode_item_json(item)
    _check_text(data)
    return data


__all__ = ["ItemEncoder"]

_FRAMING = 16  # an item's entity id and array header, beyond the value itself

logger = logging.getLogger(__name__)

Encoded = bytes | str
_second = itemgetter(1)
_TUPLE_ONLY = {tuple}
_LOGGED_AT_MOST = 1000  # (type, entity) pairs remembered as already logged


class _Kept:
    """Full-item encodings of one (type, encoding), by entity, with the entry each came from.
    (Two dicts rather than one of pairs: a pair per item would be an object for the GC.)"""

    __slots__ = ("data", "source")

    def __init__(self) -> None:
        self.source: dict[EntityId, Any] = {}  # entity -> the entry it was encoded from
        self.data: dict[EntityId, Encoded] = {}

    def forget(self, entity: EntityId) -> None:
        self.source.pop(entity, None)
        self.data.pop(entity, None)


class ItemEncoder:
    """Encodes the items of SYNC groups for one World, once per flush and encoding.

    Call :meth:`begin_flush` at the start of every flush; what it keeps across flushes is
    dropped per type with :meth:`forget_type` (no subscriber left) and per entity by
    :meth:`forget_gone` (the component went away).
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.encodings = 0
        """Items encoded so far (each encoding of each item once per flush)."""
        self.unencodable = 0
        """Items left out because their value could not be encoded (or was too big)."""
        self.max_value_bytes = 1 << 20
        """Items bigger than this (and a little framing) are left out, logged."""
        self.maybe_big: set[int] = set()
        """Type ids whose values may outgrow ``max_value_bytes`` (unbounded schemas)."""
        self._logged: set[tuple[int, EntityId]] = set()
        self._kept: dict[tuple[int, bool], _Kept] = {}
        # per flush:
        self._values: dict[int, dict[EntityId, list[Any]]] = {}
        self._used: set[tuple[int, bool]] = set()  # kept tables looked at in this flush
        self._deltas: dict[tuple[int, bool], dict[EntityId, Encoded | None]] = {}
        self.shared: dict[
            tuple[Any, ...],
            tuple[
                tuple[int, Encoded, list[int], list[int]],
                dict[int, Group],
            ],
        ] = {}
        """Groups shared by every plain subscriber of a type (and view) in this flush: the
        group, and its frame tuple by subscription id."""

    def begin_flush(self) -> None:
        """Forget what only holds within one flush."""
        self._values = {}
        self._used = set()
        self._deltas = {}
        self.shared = {}

    def forget_type(self, type_id: int) -> None:
        """Drop the kept encodings of a type (its last subscriber left)."""
        self._kept.pop((type_id, True), None)
        self._kept.pop((type_id, False), None)

    def forget_gone(self, type_id: int, pending: dict[EntityId, int]) -> None:
        """Drop the kept encodings of entities that lost this component (a changed entity's
        encoding is simply not reused: its entry is a new object)."""
        if not any(pending.values()):  # plain upserts only (the usual case): nothing gone
            return
        for binary in (True, False):
            kept = self._kept.get((type_id, binary))
            if kept is not None:
                for entity, change in pending.items():
                    if change & FINAL != UPSERTED:
                        kept.forget(entity)

    def values_of(self, reg: ComponentRegistration[Any], entity: EntityId, entry: Any) -> list[Any]:
        """The wire field values of a stored entry (see ``World.peek``), once per flush."""
        table = self._values.get(reg.type_id)
        if table is None:
            table = self._values[reg.type_id] = {}
        values = table.get(entity)
        if values is None:
            if reg.json_native:  # the stored values are already what JSON mode would give
                values = list(entry_fields(entry))
            else:
                # By name: a dump also holds computed fields, and a config may prefer aliases.
                dumped = to_wire(self.world.entry_value(reg.model, entry))
                values = [dumped[name] for name in reg.fields]
            table[entity] = values
        return values

    def full(
        self,
        reg: ComponentRegistration[Any],
        entries: Iterable[tuple[EntityId, Any]],
        binary: bool,
        entities: list[EntityId] | None = None,
    ) -> list[Encoded]:
        """The full items of ``(entity, stored entry)`` pairs: kept encodings where the entry
        is unchanged, else encoded now (and kept). ``entities``, if given, gets the entity
        of each item returned (those left out have none)."""
        key = (reg.type_id, binary)
        self._used.add(key)
        kept = self._kept.get(key)
        if kept is None:
            kept = self._kept[key] = _Kept()
        sources, datas = kept.source, kept.data
        encode = encode_item_msgpack if binary else _encode_item_json
        native = reg.json_native
        items: list[Encoded] = []
        fresh = 0
        for entity, entry in entries:
            if sources.get(entity) is entry:
                items.append(datas[entity])
                if entities is not None:
                    entities.append(entity)
                continue
            # (a JSON-native entry's fields are already its wire values: no values list)
            try:
                fields = entry_fields(entry) if native else self.values_of(reg, entity, entry)
                data = encode((entity, fields))
                if len(data) > self.max_value_bytes + _FRAMING:
                    raise ValueTooLarge(
                        f"{len(data):,} bytes encoded, over SyncSettings.max_value_bytes "
                        f"({self.max_value_bytes:,})"
                    )
            except (ValueError, TypeError, OverflowError) as exc:
                self._left_out(reg, entity, exc)
                continue
            sources[entity] = entry
            datas[entity] = data
            fresh += 1
            items.append(data)
            if entities is not None:
                entities.append(entity)
        self.encodings += fresh
        return items

    def full_batch(
        self, reg: ComponentRegistration[Any], entries: list[tuple[EntityId, Any]], binary: bool
    ) -> Encoded | None:
        """Plain upserts of a JSON-native type in one encoder call (the hottest path), joined
        as a group's upserts; ``None`` when that does not apply (the caller then uses
        :meth:`full`): a type with serializers, or items already encoded in this flush."""
        if not reg.json_native or (reg.type_id, binary) in self._used:
            return None
        rows = entries
        if {*map(type, map(_second, entries))} != _TUPLE_ONLY:  # some stored as instances
            rows = [
                (entity, entry if type(entry) is tuple else tuple(entry.__dict__.values()))
                for entity, entry in entries
            ]
        try:
            data = encode_items(binary, rows)
            if not binary:
                _check_text(data)  # type: ignore[arg-type]
        except (ValueError, TypeError, OverflowError):
            return None  # some value cannot be encoded: item by item, to leave out just it
        if reg.type_id in self.maybe_big and len(data) > self.max_value_bytes:
            return None  # one of them may be too big: item by item, to leave out just it
        self.encodings += len(rows)
        return data

    def _left_out(self, reg: ComponentRegistration[Any], entity: EntityId, exc: Exception) -> None:
        self.unencodable += 1
        key = (reg.type_id, entity)
        if key in self._logged:
            return
        if len(self._logged) >= _LOGGED_AT_MOST:
            self._logged.clear()
        self._logged.add(key)
        logger.error(
            "%s of entity %s cannot be encoded and is left out of the sync until it changes: "
            "%s: %s",
            reg.name,
            entity,
            type(exc).__name__,
            exc,
        )

    def delta(
        self,
        reg: ComponentRegistration[Any],
        entity: EntityId,
        entry: Any,
        binary: bool,
        baseline: list[Any],
    ) -> Encoded | None:
        """``[entity, {field index: value}]`` for the fields that differ from ``baseline``
        (the same for every up-to-date subscriber); ``None`` if no field differs."""
        table = self._deltas.get((reg.type_id, binary))
        if table is None:
            table = self._deltas[(reg.type_id, binary)] = {}
        if entity in table:
            return table[entity]
        values = self.values_of(reg, entity, entry)
        changed = {
            i: v for i, (old, v) in enumerate(zip(baseline, values, strict=True)) if old != v
        }
        data: Encoded | None = None
        try:
            if changed and binary:
                data = encode_item_msgpack([entity, changed])
            elif changed:
                data = _encode_item_json([entity, {str(i): v for i, v in changed.items()}])
        except (ValueError, TypeError, OverflowError) as exc:
            self._left_out(reg, entity, exc)
            data = None
        if data is not None:
            self.encodings += 1
        table[entity] = data
        return data
