"""History on the server: what each flush sent of the types that keep it, in columns,
bounded in time and in bytes, and the answers to ``pl3xus.history``. No I/O.

A type keeps history when its builder says so (``.history(seconds=..., fields=...)``). Each
flush adds, per entity whose value it sent, one point: the flush's as-of time and the chosen
numeric fields (one ``array('d')`` per field, sharing the time column), or the whole value
(its wire field list, msgpack-encoded). Points older than the type's ``seconds`` go; past
the server-wide byte budget (``SyncSettings.history_bytes``) the oldest points go first,
whatever their type. Both are counted. Points are dropped in logic at once (no answer
carries them) and in memory in batches, when what is dropped passes an eighth of what is
kept (so memory stays within about 1.125 times the budget, plus the per-entity overhead).

An answer comes in parts of at most :data:`MAX_PART_POINTS` points (and
:data:`MAX_PART_BYTES` bytes of whole values, :data:`MAX_PART_SERIES` entities examined):
the part's ``cursor`` asks for the next one. A cursor holds the whole position, so the
server keeps nothing between parts. Only entities the asking identity sees now are
answered; one it does not see is answered exactly like one that does not exist.
"""

from __future__ import annotations

import logging
import math
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from ..exceptions import InvalidValue, NotFound
from ..protocol import HistoryPart, HistoryQuery, shown, to_wire
from ..security import Identity
from ..world import FINAL, UPSERTED, EntityId, World, entry_fields
from ._access import sees_entity
from ._history_spec import MAX_HISTORY_SECONDS, HistorySpec, history_spec
from ._registry import ComponentRegistration, ComponentRegistry
from ._taps import FlushHook

__all__ = [
    "MAX_HISTORY_SECONDS",
    "MAX_PART_BYTES",
    "MAX_PART_POINTS",
    "MAX_PART_SERIES",
    "History",
    "HistorySpec",
    "HistoryStatistics",
    "history_spec",
]

logger = logging.getLogger(__name__)

MAX_PART_POINTS = 20_000
"""The most points (time stamps) one part of an answer carries."""
MAX_PART_BYTES = 1 << 20
"""The most bytes of whole values one part carries (beyond a first point)."""
MAX_PART_SERIES = 2_000
"""The most entities one part of a whole type's answer examines."""
BLOB_OVERHEAD = 41
"""What a whole value costs beyond its encoded bytes: a bytes object's header and its slot."""

_GONE = object()
_NAN = math.nan


@dataclass(frozen=True, slots=True)
class HistoryStatistics:
    """The history's counts (``SyncServer.history.statistics()``; ``/metrics``).

    Attributes:
        points: Points kept now (in every type).
        bytes: Bytes they count against the budget.
        budget: ``SyncSettings.history_bytes``.
        series: Entity series kept.
        dropped_for_time: Points dropped since start because they were older than their
            type's ``seconds``.
        dropped_for_budget: Points dropped since start to stay within the budget.
        queries: ``pl3xus.history`` parts answered.
        refused: Queries refused (bad parameters, unknown type or field, entity not seen).
    """

    points: int
    bytes: int
    budget: int
    series: int
    dropped_for_time: int
    dropped_for_budget: int
    queries: int
    refused: int


class _Series:
    """One entity's points: a time column and value columns (or encoded whole values)."""

    __slots__ = ("blobs", "cols", "t")

    def __init__(self, columns: int, whole: bool) -> None:
        self.t = array("d")
        self.cols = [array("d") for _ in range(columns)]
        self.blobs: list[bytes] = []

    def cut(self, before: float) -> int:
        """Drop the points older than ``before``; how many went."""
        k = bisect_left(self.t, before)
        if k:
            del self.t[:k]
            for col in self.cols:
                del col[:k]
            del self.blobs[:k]
        return k


class _Kept:
    """One type's history."""

    def __init__(self, reg: ComponentRegistration[Any], spec: HistorySpec) -> None:
        self.reg = reg
        self.spec = spec
        self.whole = spec.fields is None
        self.index = tuple(reg.fields.index(f) for f in spec.fields or ())
        self.point_bytes = 8 * (1 + len(self.index))
        self.series: dict[EntityId, _Series] = {}
        self.batch: list[tuple[_Series, Any]] = []
        # [as_of of the last flush in it, points, bytes], oldest first; flushes within
        # `bucket` seconds share one entry (what the budget drops at once)
        self.flushes: deque[list[float]] = deque()
        self.bucket = spec.seconds / 2000
        self.drop_before = -math.inf  # points with t < this are gone
        self.budget_cut = -math.inf  # the latest time the budget dropped
        self.last: float | None = None  # the latest point's time
        self.first = math.inf  # the first point's time
        self.points = 0
        self.bytes = 0
        self.dead = 0  # bytes dropped in logic, still in memory

    def series_for(self, entity: EntityId) -> _Series:
        series = self.series.get(entity)
        if series is None:
            series = self.series[entity] = _Series(len(self.index), self.whole)
        return series

    def compact(self) -> None:
        before = self.drop_before
        empty = []
        for entity, series in self.series.items():
            series.cut(before)
            if not series.t:
                empty.append(entity)
        for entity in empty:
            del self.series[entity]
        self.dead = 0


class History(FlushHook):
    """The server's history: a :class:`FlushHook` the engine feeds with the changes of the
    types that keep it, and the answers to ``pl3xus.history``.

    Args:
        world: The World the flushes read values from.
        registry: The component registry (types by name, visibility).
        budget: ``() -> bytes`` the whole history may count (read at each flush).
    """

    def __init__(
        self, world: World, registry: ComponentRegistry, budget: Callable[[], int]
    ) -> None:
        self._world = world
        self._registry = registry
        self._budget = budget
        self._kept: dict[int, _Kept] = {}
        self._touched: list[_Kept] = []
        self._points = 0
        self._bytes = 0
        self._dropped_time = 0
        self._dropped_budget = 0
        self._queries = 0
        self._refused = 0
        self.paused = False
        """Keep nothing (a gateway: its authority keeps the history and answers for it)."""

    # ------------------------------------------------------------------ what is kept

    def keep(self, reg: ComponentRegistration[Any]) -> None:
        """Keep the history ``reg.history`` says of its type."""
        spec = reg.history
        if spec is not None and reg.type_id not in self._kept:
            self._kept[reg.type_id] = _Kept(reg, spec)

    def kept(self) -> Mapping[str, HistorySpec]:
        """Which types keep history, by wire name (for the welcome)."""
        return {k.reg.name: k.spec for k in self._kept.values()}

    def welcome(self) -> dict[str, Any]:
        """The welcome's ``history`` table: ``{type: {"seconds": s, "fields": [...] |
        None}}``."""
        return {
            k.reg.name: {
                "seconds": k.spec.seconds,
                "fields": list(k.spec.fields) if k.spec.fields is not None else None,
            }
            for k in self._kept.values()
        }

    def statistics(self) -> HistoryStatistics:
        """The counts (see :class:`HistoryStatistics`)."""
        return HistoryStatistics(
            points=self._points,
            bytes=self._bytes,
            budget=self._budget(),
            series=sum(len(k.series) for k in self._kept.values()),
            dropped_for_time=self._dropped_time,
            dropped_for_budget=self._dropped_budget,
            queries=self._queries,
            refused=self._refused,
        )

    def clear(self) -> None:
        """Forget every point (the counts stay)."""
        for kept in self._kept.values():
            kept.series.clear()
            kept.flushes.clear()
            kept.batch.clear()
            kept.points = kept.bytes = kept.dead = 0
            kept.last = None
            kept.first = math.inf
        self._touched.clear()
        self._points = self._bytes = 0

    # ------------------------------------------------------------------ the flush hook

    def changes(self, reg: ComponentRegistration[Any], pending: Mapping[EntityId, int]) -> None:
        """Take the values ``reg``'s changes in this flush carry (added at :meth:`flushed`)."""
        kept = self._kept.get(reg.type_id)
        if kept is None or self.paused:
            return
        entries = self._world.peek(reg.model)
        batch = kept.batch
        if not batch:
            self._touched.append(kept)
        add = batch.append
        series_for = kept.series_for
        if kept.whole:
            native, model, fields = reg.json_native, reg.model, reg.fields
            entry_value, pack = self._world.entry_value, msgpack.packb
            for entity, code in pending.items():
                if code & FINAL != UPSERTED:
                    add((series_for(entity), _GONE))
                    continue
                entry = entries.get(entity)
                if entry is None:
                    continue
                if native:
                    values = list(entry_fields(entry))
                else:
                    dumped = to_wire(entry_value(model, entry))
                    values = [dumped[name] for name in fields]
                add((series_for(entity), pack(values)))
            return
        index = kept.index
        if len(index) == 1:
            (i,) = index
            for entity, code in pending.items():
                if code & FINAL != UPSERTED:
                    continue
                entry = entries.get(entity)
                if entry is not None:
                    value = (entry if type(entry) is tuple else entry_fields(entry))[i]
                    add((series_for(entity), value))
            return
        for entity, code in pending.items():
            if code & FINAL != UPSERTED:
                continue
            entry = entries.get(entity)
            if entry is not None:
                fields_now = entry if type(entry) is tuple else entry_fields(entry)
                add((series_for(entity), tuple(fields_now[i] for i in index)))

    def flushed(self, as_of: float) -> None:
        """The flush is done: its points get ``as_of``; then the bounds apply."""
        touched, self._touched = self._touched, []
        for kept in touched:
            self._add(kept, as_of)
        if not self._kept:
            return
        now = max((k.last for k in self._kept.values() if k.last is not None), default=as_of)
        self._bound(now)

    def _add(self, kept: _Kept, as_of: float) -> None:
        batch, kept.batch = kept.batch, []
        last = kept.last
        t = as_of if last is None or as_of >= last else last  # (a clock stepped back)
        points = nbytes = 0
        if kept.whole:
            for series, blob in batch:
                if blob is _GONE:
                    continue  # (its past stays until it ages out)
                series.t.append(t)
                series.blobs.append(blob)
                points += 1
                nbytes += 8 + BLOB_OVERHEAD + len(blob)
        elif len(kept.index) == 1:
            for series, value in batch:
                try:
                    series.cols[0].append(value)
                except TypeError:  # (None, or a value the model coerced oddly)
                    series.cols[0].append(_number(value))
                series.t.append(t)
            points = len(batch)
            nbytes = points * kept.point_bytes
        else:
            for series, values in batch:
                for col, value in zip(series.cols, values, strict=True):
                    try:
                        col.append(value)
                    except TypeError:
                        col.append(_number(value))
                series.t.append(t)
            points = len(batch)
            nbytes = points * kept.point_bytes
        if not points:
            return
        kept.last = t
        if kept.first == math.inf:
            kept.first = t
        flushes = kept.flushes
        if flushes and t - flushes[-1][0] < kept.bucket and flushes[-1][0] >= kept.drop_before:
            entry = flushes[-1]
            entry[0] = t
            entry[1] += points
            entry[2] += nbytes
        else:
            flushes.append([t, float(points), float(nbytes)])
        kept.points += points
        kept.bytes += nbytes
        self._points += points
        self._bytes += nbytes

    def _bound(self, now: float) -> None:
        # 1. time: each type's points older than its seconds
        for kept in self._kept.values():
            cutoff = now - kept.spec.seconds
            flushes = kept.flushes
            while flushes and flushes[0][0] < cutoff:
                self._drop(kept, flushes.popleft(), for_budget=False)
            if kept.drop_before < cutoff:
                kept.drop_before = cutoff
        # 2. bytes: the oldest first, across the types
        budget = self._budget()
        while self._bytes > budget:
            oldest = None
            for kept in self._kept.values():
                if kept.flushes and (oldest is None or kept.flushes[0][0] < oldest.flushes[0][0]):
                    oldest = kept
            if oldest is None:
                break
            self._drop(oldest, oldest.flushes.popleft(), for_budget=True)
        for kept in self._kept.values():
            if kept.dead > max(kept.bytes // 8, 64 << 10):
                kept.compact()

    def _drop(self, kept: _Kept, entry: list[float], *, for_budget: bool) -> None:
        t, points, nbytes = entry[0], int(entry[1]), int(entry[2])
        kept.drop_before = max(kept.drop_before, math.nextafter(t, math.inf))
        kept.points -= points
        kept.bytes -= nbytes
        kept.dead += nbytes
        self._points -= points
        self._bytes -= nbytes
        if for_budget:
            kept.budget_cut = max(kept.budget_cut, t)
            self._dropped_budget += points
        else:
            self._dropped_time += points

    # ------------------------------------------------------------------ answers

    def refuse(self, exc: Exception, query: Any, identity: Identity) -> None:
        """Count and log a refused query (``answer`` calls it; so does the server for
        parameters that did not validate)."""
        self._refused += 1
        logger.info("pl3xus.history refused for %r: %s (asked %r)", identity.name, exc, query)

    def answer(self, query: HistoryQuery, identity: Identity) -> HistoryPart:
        """One part of the answer to ``query`` for ``identity``.

        Raises:
            NotFound: no such type, a type that keeps no history, or an entity that does
                not exist or ``identity`` does not see now (answered alike).
            InvalidValue: ``seconds`` out of range, a field the history does not keep, or
                a cursor that is not one this server gave.
        """
        try:
            part = self._answer(query, identity)
        except (NotFound, InvalidValue) as exc:
            self.refuse(exc, query, identity)
            raise
        self._queries += 1
        return part

    def _answer(self, query: HistoryQuery, identity: Identity) -> HistoryPart:
        reg = self._registry.by_name(query.type)
        if reg is None:
            raise NotFound(f"pl3xus.history: there is no component type {shown(query.type)}")
        kept = self._kept.get(reg.type_id)
        if kept is None:
            raise NotFound(
                f"pl3xus.history: {reg.name} keeps no history (its server registers it "
                "without .history(...))"
            )
        seconds = query.seconds
        if not (math.isfinite(seconds) and 0 < seconds <= MAX_HISTORY_SECONDS):
            raise InvalidValue(
                f"pl3xus.history: seconds must be > 0 and at most {MAX_HISTORY_SECONDS:g}, "
                f"got {seconds!r}",
                field="seconds",
            )
        columns, pick = self._columns(kept, query.field)
        world, registry = self._world, self._registry
        vis = reg.visibility

        def sees(entity: EntityId) -> bool:
            return sees_entity(world, registry, identity, entity) and (
                vis is None or vis.sees(world, identity, entity)
            )

        if query.cursor is not None:
            since, until, first, after = _cursor(query.cursor)
        else:
            until = kept.last if kept.last is not None else 0.0
            since = until - min(seconds, kept.spec.seconds)
            first, after = -1, since - 1.0
        if query.entity is not None:
            entity = EntityId(query.entity)
            if not sees(entity):
                raise NotFound(f"pl3xus.history: no entity {query.entity} with {reg.name}")
            entities = [entity]
        else:
            entities = sorted(e for e in kept.series if e >= first)
        lo = max(since, kept.drop_before)
        rows: list[list[Any]] = []
        points = nbytes = examined = 0
        cursor: list[float] | None = None
        for entity in entities:
            if examined >= MAX_PART_SERIES:
                cursor = [since, until, float(entity), since - 1.0]
                break
            examined += 1
            series = kept.series.get(entity)
            if series is None or (query.entity is None and not sees(entity)):
                continue
            t = series.t
            start = bisect_left(t, lo)
            if entity == first:
                start = max(start, bisect_right(t, after))
            end = bisect_right(t, until)
            room = MAX_PART_POINTS - points
            if kept.whole:
                blobs = series.blobs
                stop = start
                while stop < end and stop - start < room:
                    if (stop > start or points) and nbytes + len(blobs[stop]) > MAX_PART_BYTES:
                        break
                    nbytes += len(blobs[stop])
                    stop += 1
            else:
                stop = min(end, start + room)
            if stop > start:
                rows.append([int(entity), t[start:stop].tolist(), *pick(series, start, stop)])
                points += stop - start
            if stop < end:
                cursor = [since, until, float(entity), t[stop - 1] if stop > start else after]
                break
        return HistoryPart.model_construct(
            type=reg.name,
            fields=columns,
            whole=kept.whole and query.field is None,
            since=since,
            until=until,
            kept_since=max(kept.drop_before, kept.first) if kept.points else None,
            cut_by_budget=kept.budget_cut >= since,
            series=rows,
            cursor=cursor,
        )

    def _columns(
        self, kept: _Kept, field: str | None
    ) -> tuple[list[str], Callable[[_Series, int, int], list[list[Any]]]]:
        """The answer's value columns and how to read them from a series."""
        reg = kept.reg
        if kept.whole:
            if field is None:

                def whole(series: _Series, start: int, stop: int) -> list[list[Any]]:
                    return [[msgpack.unpackb(b) for b in series.blobs[start:stop]]]

                return list(reg.fields), whole
            if field not in reg.fields:
                raise InvalidValue(
                    f"pl3xus.history: {reg.name} has no field {shown(field)} "
                    f"(fields: {', '.join(reg.fields)})",
                    field="field",
                )
            i = reg.fields.index(field)

            def one_of_whole(series: _Series, start: int, stop: int) -> list[list[Any]]:
                return [[msgpack.unpackb(b)[i] for b in series.blobs[start:stop]]]

            return [field], one_of_whole
        fields = kept.spec.fields or ()
        if field is None:

            def every(series: _Series, start: int, stop: int) -> list[list[Any]]:
                return [col[start:stop].tolist() for col in series.cols]

            return list(fields), every
        if field not in fields:
            raise InvalidValue(
                f"pl3xus.history: {reg.name} keeps no history of field {shown(field)} "
                f"(it keeps {', '.join(fields)})",
                field="field",
            )
        j = fields.index(field)

        def one(series: _Series, start: int, stop: int) -> list[list[Any]]:
            return [series.cols[j][start:stop].tolist()]

        return [field], one


def _number(value: Any) -> float:
    if value is None:
        return _NAN
    try:
        return float(value)
    except (TypeError, ValueError):
        return _NAN


def _cursor(cursor: list[float]) -> tuple[float, float, int, float]:
    if len(cursor) != 4 or not all(math.isfinite(v) for v in cursor):
        raise InvalidValue(
            "pl3xus.history: cursor is not one this server gave (four finite numbers)",
            field="cursor",
        )
    since, until, entity, after = cursor
    if entity != int(entity):
        raise InvalidValue("pl3xus.history: the cursor's entity is not an integer", field="cursor")
    return since, until, int(entity), after
