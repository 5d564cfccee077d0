"""One subscription's group of a SYNC frame, built from its changes or from the next part of
its snapshot. No I/O.

A group's upserts are the encoder's bytes (:class:`~pl3xus_rx.sync._encoding.ItemEncoder`,
each item encoded once per flush and encoding): full values, field deltas against what
every up-to-date subscriber holds, or values past a subscription's deadband. The engine
decides which subscriptions get a group and in which frame (:mod:`._engine`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ..protocol import EntityControl, SyncFlag
from ..world import DESPAWNED, FINAL, UPSERTED, WAS_REMOVED, EntityId
from ._encoding import ItemEncoder
from ._subs import Subscription, View

__all__ = ["change_group", "snapshot_part"]

# A pending change is a small int (the World's ChangeTracker codes): the final state in the
# low two bits and a flag if a removal happened since the last flush (so it is never lost).
_UPSERT, _DESPAWNED, _WAS_REMOVED, _FINAL = UPSERTED, DESPAWNED, WAS_REMOVED, FINAL
# group flags as plain ints (they are or-ed and compared on the hot path)
_SNAPSHOT, _COMPLETE, _CONTINUED = (
    int(SyncFlag.SNAPSHOT),
    int(SyncFlag.COMPLETE),
    int(SyncFlag.CONTINUED),
)

StillSeen = Callable[[View, list[tuple[EntityId, Any]]], list[tuple[EntityId, Any]]]
"""Keeps the entries of a control view that its identity still sees (live rules)."""


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _within_deadband(old: list[Any], new: list[Any], deadband: float) -> bool:
    """True if no numeric field moved by ``deadband`` or more and nothing else changed."""
    for a, b in zip(old, new, strict=True):
        if _numeric(a) and _numeric(b):
            if abs(b - a) >= deadband or math.isnan(b) != math.isnan(a):
                return False
        elif a != b:
            return False
    return True


def change_group(
    sub: Subscription,
    changes: dict[EntityId, int],
    stored: Mapping[EntityId, Any],
    cache: ItemEncoder,
    baseline: dict[EntityId, list[Any]] | None,
    binary: bool,
    counters: dict[str, int],
) -> tuple[int, bytes | str, list[int], list[int]]:
    """``(upsert count, joined upserts, removals, despawns)`` of ``sub``'s group for
    ``changes`` (entity -> pending change code), ``stored`` being the type's values now.

    With ``baseline`` (a field-delta type), upserts are deltas against it; with a deadband,
    values that moved less than it are left out (counted in ``counters``), except the
    entities the connection changed itself (``sub.forced``).
    """
    reg = sub.reg
    removals: list[int] = []
    despawns: list[int] = []
    deadband = sub.deadband
    if deadband is None and baseline is None:
        entries: list[tuple[EntityId, Any]] | None = None
        if not any(changes.values()):  # every change a plain upsert (_UPSERT is 0)
            try:
                # (entity, entry) pairs, made in C: for flat entries (tuples of the field
                # values) these are already the items the encoder takes
                entries = list(zip(changes, map(stored.__getitem__, changes), strict=True))
            except KeyError:
                entries = None  # removed again since: the loop below copes
            if entries is not None:
                # The hottest path: the whole group in one encoder call.
                batch = cache.full_batch(reg, entries, binary)
                if batch is not None:
                    return len(entries), batch, [], []
        if entries is None:
            entries = []
            for entity, change in changes.items():
                final = change & _FINAL
                if final == _DESPAWNED:
                    despawns.append(entity)
                    continue
                value = stored.get(entity) if final == _UPSERT else None
                if change & _WAS_REMOVED or value is None:
                    # a removal happened (maybe followed by an upsert), or the entity
                    # lost the component again after the change was recorded
                    removals.append(entity)
                if value is not None:
                    entries.append((entity, value))
        items = cache.full(reg, entries, binary)
        joined_fast: bytes | str = b"".join(items) if binary else ",".join(items)  # type: ignore[arg-type]
        return len(items), joined_fast, removals, despawns
    upserts: list[Any] = []
    for entity, change in changes.items():
        forced = entity in sub.forced
        if forced:
            sub.forced.discard(entity)  # the caller's own write: past the deadband
        final = change & _FINAL
        if final == _DESPAWNED:
            despawns.append(entity)
            sub.last_sent.pop(entity, None)
            continue
        removed = change & _WAS_REMOVED
        if removed:
            removals.append(entity)
            sub.last_sent.pop(entity, None)
        if final == _UPSERT:
            value = stored.get(entity)
            if value is None:  # removed again after the change was recorded
                if not removed:
                    removals.append(entity)
                continue
            if deadband is not None:
                values = cache.values_of(reg, entity, value)
                last = sub.last_sent.get(entity)
                if last is not None and not removed:
                    if forced and last == values:
                        continue  # it has this value already
                    if not forced and _within_deadband(last, values, deadband):
                        counters["deadband_suppressed"] += 1
                        continue
                sub.last_sent[entity] = values
            base = baseline.get(entity) if baseline is not None else None
            if base is not None and not removed and not (sub.view and entity in sub.view.fresh):
                delta = cache.delta(reg, entity, value, binary, base)
                if delta is not None:  # None: changed and changed back within the flush
                    upserts.append(delta)
                continue
            upserts.extend(cache.full(reg, ((entity, value),), binary))
    joined: bytes | str = b"".join(upserts) if binary else ",".join(upserts)
    return len(upserts), joined, removals, despawns


def snapshot_part(
    sub: Subscription,
    stored: Mapping[EntityId, Any],
    cache: ItemEncoder,
    limit: int,
    byte_limit: int,
    still_seen: StillSeen,
) -> tuple[int, int, bytes | str, int, list[tuple[EntityId, Any]], bool]:
    """The next part of ``sub``'s snapshot: ``(flags, item count, joined items, their
    bytes, entries sent, done)``, with at most ``limit`` entities and (beyond its first item)
    ``byte_limit`` bytes of items. What does not fit is kept on ``sub`` for the next part;
    entities removed meanwhile are skipped (never mentioned)."""
    reg = sub.reg
    rest = sub.snapshot_rest
    part: list[EntityId] = []
    view = sub.view
    control = view is not None and reg.model is EntityControl
    if rest is None:  # the snapshot begins
        flags = _SNAPSHOT
        if view is not None and sub.entity is None:
            entries = [(e, v) for e, v in stored.items() if e in view.visible]
        elif sub.entity is None:
            entries = list(stored.items())
        else:
            value = stored.get(sub.entity)
            if view is not None and sub.entity not in view.visible:
                value = None
            entries = [(sub.entity, value)] if value is not None else []
        if control:
            entries = still_seen(view, entries)  # type: ignore[arg-type]
        if len(entries) > limit:
            sub.snapshot_rest = rest = [entity for entity, _ in entries[limit:]]
            sub.snapshot_at = 0
            sub.snapshot_pending = set(rest)
            del entries[limit:]
    else:
        flags = _SNAPSHOT | _CONTINUED
        part = rest[sub.snapshot_at : sub.snapshot_at + limit]
        sub.snapshot_at += len(part)
        sub.snapshot_pending.difference_update(part)
        entries = [
            (entity, stored[entity])
            for entity in part
            if entity in stored and (view is None or entity in view.visible)
        ]
        if control:
            entries = still_seen(view, entries)  # type: ignore[arg-type]
    binary = sub.client.binary
    # Big snapshots (every client after a restart) are the hot case here: a lookup per
    # item whose entity has not changed since it was encoded.
    sent_entities: list[EntityId] = []
    items = cache.full(reg, entries, binary, sent_entities)
    joined: bytes | str = b"".join(items) if binary else ",".join(items)  # type: ignore[arg-type]
    size = len(joined)
    later: list[EntityId] = []
    if size > byte_limit and len(items) > 1:
        # bounded in bytes too: what does not fit goes first in the next part
        size, cut = 0, len(items)
        for index, item in enumerate(items):
            if index and size + len(item) > byte_limit:
                cut = index
                break
            size += len(item)
        later = sent_entities[cut:]
        del items[cut:]
        joined = b"".join(items) if binary else ",".join(items)  # type: ignore[arg-type]
        kept = set(sent_entities[:cut])
        entries = [(e, v) for e, v in entries if e in kept]
        remaining = [] if rest is None else rest[sub.snapshot_at :]
        sub.snapshot_rest = rest = [*later, *remaining]
        sub.snapshot_at = 0
        sub.snapshot_pending.update(later)
    done = rest is None or sub.snapshot_at >= len(rest)
    if done:
        flags |= _COMPLETE
        sub.snapshot_rest = None
        sub.snapshot_pending = set()
    if sub.forced:  # what the caller changed itself is in this part (or gone)
        covered = part if flags & _CONTINUED else [e for e, _ in entries]
        sub.forced.difference_update(e for e in covered if e not in later)
    if sub.deadband is not None:
        sub.last_sent.update((e, cache.values_of(reg, e, v)) for e, v in entries)
    return flags, len(items), joined, size, entries, done
