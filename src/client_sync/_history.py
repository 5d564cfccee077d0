"""The client's view of the server's history (``pl3xus.history``): the past of a field
in parts, then its live values on the same signal. A room of
:class:`~client_sync.SyncProvider`."""

from __future__ import annotations

import asyncio
import logging
import math
import operator
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar, cast

import reactivex
from pydantic import BaseModel

from pl3xus_rx.exceptions import CommandRejected, CommandTimeout, ConnectionLost
from pl3xus_rx.protocol import HISTORY_QUERY, from_wire

from ._commands import Commands
from .signal import Signal, WritableSignal

__all__ = ["HistoryPoint", "Histories"]

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

HistoryPoint = tuple[float, Any]
"""``(t, value)``: ``t`` in the authority's flush time (seconds since the epoch)."""

MAX_PARTS = 10_000
"""The most parts one fetch takes (a server that keeps sending cursors is cut off)."""


class Histories(Commands):
    """History signals and fetches."""

    _tasks: set[asyncio.Task[Any]]
    _derived: dict[Hashable, Signal[Any]]
    _kept_history: Mapping[str, Any]

    @property
    def history_kept(self) -> Mapping[str, Any]:
        """Which types the server keeps history of, from its welcome: ``{type name:
        {"seconds": s, "fields": [...] or None}}`` (empty before the first connection)."""
        return self._kept_history

    async def fetch_history(
        self,
        model: type[T],
        entity: int,
        field: str | None = None,
        *,
        seconds: float = 600.0,
        timeout: float | None = None,
    ) -> tuple[HistoryPoint, ...]:
        """The past ``seconds`` of ``entity``'s ``model`` component that the server keeps,
        oldest first, as ``(t, value)`` points: ``value`` is the field's value, or (no
        ``field``) the whole value as a ``model`` (a type that keeps whole values) or a
        dict of the fields kept. All parts are fetched before it returns.

        Raises:
            NotRegistered: ``model`` is not in the registry.
            NotFound: the server keeps no history of the type, or has no such entity (or
                this identity does not see it).
            InvalidValue: a field the history does not keep, ``seconds`` out of range.
            ConnectionLost: not connected, or the link dropped meanwhile.
            CommandTimeout: a part did not come in time.
        """
        _, points = await self._history_parts(model, entity, field, seconds, timeout)
        return tuple(points)

    async def _history_parts(
        self,
        model: type[T],
        entity: int,
        field: str | None,
        seconds: float,
        timeout: float | None,
    ) -> tuple[float, list[HistoryPoint]]:
        name = self.registry.name_of(model)
        params: dict[str, Any] = {
            "type": name,
            "entity": entity,
            "field": field,
            "seconds": seconds,
        }
        points: list[HistoryPoint] = []
        until = 0.0
        for _ in range(MAX_PARTS):
            body = await self._command(_query_of(self, params), timeout)
            part = body.get("value") or {}
            until = float(part.get("until") or 0.0)
            columns = list(part.get("fields") or [])
            whole = bool(part.get("whole"))
            for row in part.get("series") or []:
                if not row or row[0] != entity:
                    continue
                points.extend(zip(row[1], _values(model, columns, whole, row[2:]), strict=True))
            cursor = part.get("cursor")
            if cursor is None:
                break
            params = {**params, "cursor": cursor}
        return until, points

    def history(
        self,
        model: type[T],
        entity: int,
        field: str | None = None,
        *,
        seconds: float = 600.0,
        max_points: int = 20_000,
    ) -> Signal[tuple[HistoryPoint, ...]]:
        """A trend: ``entity``'s ``model`` component over the last ``seconds``, as ``(t,
        value)`` points, oldest first (see :meth:`fetch_history` for ``value``). It fills
        with what the server keeps (in parts), then goes on with the live values of the
        component on the same signal (``t``: the server's as-of time of the frame that
        brought it, on a protocol-v2 link; else this machine's clock). Points older than
        ``seconds`` before the newest go, and at most ``max_points`` stay. Live while
        observed; shared per arguments. A server without history for the type gives the
        live values only (its refusal goes to :attr:`errors`).

        Raises:
            NotRegistered: ``model`` is not in the registry.
            ValueError: ``seconds`` or ``max_points`` not positive.
        """
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds must be > 0, got {seconds!r}")
        if max_points < 1:
            raise ValueError(f"max_points must be 1 or more, got {max_points}")
        self.registry.name_of(model)  # (raises NotRegistered now, not when observed)
        key = ("history", model, entity, field, seconds, max_points)
        signal = self._derived.get(key)
        if signal is None:
            signal = self._derived[key] = self._history(model, entity, field, seconds, max_points)
        return cast(Signal[tuple[HistoryPoint, ...]], signal)

    def _history(
        self, model: type[T], entity: int, field: str | None, seconds: float, max_points: int
    ) -> Signal[tuple[HistoryPoint, ...]]:
        live: list[reactivex.abc.DisposableBase] = []
        # points that came live while the past was on its way (None once it is in)
        early: list[list[HistoryPoint] | None] = [[]]
        name = self.registry.name_of(model)

        def bounded(points: list[HistoryPoint] | tuple[HistoryPoint, ...]) -> tuple[Any, ...]:
            if not points:
                return ()
            oldest = points[-1][0] - seconds
            start = max(0, len(points) - max_points)
            while start < len(points) and points[start][0] < oldest:
                start += 1
            return tuple(points[start:])

        def value_of(value: BaseModel) -> Any:
            if field is not None:
                return getattr(value, field, None)
            kept = self._kept_history.get(name) or {}
            fields = kept.get("fields")
            if fields is None:
                return value
            return {f: getattr(value, f, None) for f in fields}

        def arrived(value: Any) -> None:
            if value is None:
                return
            as_of = cast(Any, self).as_of
            t = float(as_of) if as_of is not None else time.time()
            point = (t, value_of(value))
            waiting = early[0]
            if waiting is not None:
                waiting.append(point)
            points = signal.get()
            if points and points[-1][0] > t:
                return  # (older than what is shown: a clock that stepped back)
            signal.set(bounded((*points, point)))

        async def fill() -> None:
            try:
                until, past = await self._history_parts(model, entity, field, seconds, None)
            except (CommandRejected, ConnectionLost, CommandTimeout, ValueError) as exc:
                # (ValueError: a past value this end's model refuses)
                logger.info("no history of %s %s from the server: %s", name, entity, exc)
                cast(Any, self).errors.on_next(exc)
                early[0] = None
                return
            waiting, early[0] = early[0] or [], None
            later = [p for p in waiting if p[0] > until]
            signal.set(bounded(past + later))

        def start() -> None:
            def go() -> None:  # (on the provider's loop: a blocking caller's thread is not)
                early[0] = []
                component = cast(Any, self).entity_component(model, entity)
                live.append(component.subscribe(arrived))
                if self._cid is not None:
                    task = asyncio.get_running_loop().create_task(fill())
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

            cast(Any, self)._call_on_loop(go)

        def stop() -> None:
            def go() -> None:
                while live:
                    live.pop().dispose()
                early[0] = None

            cast(Any, self)._call_on_loop(go)

        signal: WritableSignal[tuple[HistoryPoint, ...]] = WritableSignal(
            (), equals=operator.is_, on_first_subscribe=start, on_last_dispose=stop
        )
        return signal


def _query_of(provider: Commands, params: dict[str, Any]) -> Callable[[], tuple[int, Any]]:
    def build() -> tuple[int, Any]:
        return provider._session.query(HISTORY_QUERY, params)

    return build


def _values(model: type[BaseModel], columns: list[str], whole: bool, cols: list[Any]) -> list[Any]:
    """One row's values: a column's numbers, a model per whole value, or dicts."""
    if whole:
        return [from_wire(model, dict(zip(columns, v, strict=False))) for v in cols[0]]
    if len(cols) == 1:
        return list(cols[0])
    return [dict(zip(columns, vs, strict=True)) for vs in zip(*cols, strict=True)]
