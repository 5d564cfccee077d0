"""The client's queries: cached, reference-counted answers that the server's
invalidations refetch, and one-off fetches. A room of :class:`~client_sync.SyncProvider`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from pl3xus_rx.protocol import Query, from_wire, to_wire

from ._commands import Commands
from .session import Invalidation
from .signal import Signal, WritableSignal
from .states import QueryState, QueryStatus

R = TypeVar("R", bound=BaseModel)

__all__ = ["Queries"]


class _Query:
    """One cached query answer, shared by every caller with equal params; reference
    counted: dropped from the cache when its last observer leaves (a later ``query()``
    fetches afresh)."""

    def __init__(
        self,
        name: str,
        params: BaseModel,
        response: type[BaseModel],
        on_unobserved: Callable[[_Query], None],
    ) -> None:
        self.name = name
        self.params = params
        self.wire_params = to_wire(params)
        self.response = response
        self.signal: WritableSignal[QueryState[Any]] = WritableSignal(
            QueryState(QueryStatus.LOADING), on_last_dispose=lambda: on_unobserved(self)
        )
        self.fetching = False
        self.again = False


class Queries(Commands):
    """Queries and their cache."""

    _queries: dict[tuple[str, str], _Query]
    _tasks: set[asyncio.Task[Any]]

    def refetch(self, model: type[BaseModel], params: BaseModel | None = None) -> int:
        """Ask the server again for the cached answers of query ``model`` (only the one for
        ``params`` if given), as an invalidation would; returns how many are refetched.

        Raises:
            NotRegistered: the query type is not in the registry (``register_query``).
        """
        name, _ = self.registry.query_of(model)
        wanted = None if params is None else json.dumps(to_wire(params), sort_keys=True)
        count = 0
        for (query_name, key), query in self._queries.items():
            if query_name == name and (wanted is None or key == wanted):
                self._fetch(query)
                count += 1
        return count

    @overload
    def query(self, model: type[Query[R]], params: Query[R]) -> Signal[QueryState[R]]: ...
    @overload
    def query(self, model: type[BaseModel], params: BaseModel) -> Signal[QueryState[Any]]: ...
    def query(self, model: type[BaseModel], params: BaseModel) -> Signal[QueryState[Any]]:
        """The server's answer to query ``model`` with ``params``, as a signal; cached per
        (type, params), shared by every caller (keyed by params: ``query(Q, Q(robot=3))``
        and ``query(Q, Q(robot=4))`` are two answers), refetched when the server
        invalidates it (all of ``Q``, or just these params) or after a reconnect, and
        dropped from the cache when its last observer leaves (reference counted).

        Raises:
            NotRegistered: the query type is not in the registry (``register_query``).
        """
        name, response = self.registry.query_of(model)
        key = (name, json.dumps(to_wire(params), sort_keys=True))
        query = self._queries.get(key)
        if query is None:

            def forget(done: _Query) -> None:
                if self._queries.get(key) is done:
                    del self._queries[key]

            query = self._queries[key] = _Query(name, params, response, forget)
            self._fetch(query)
        return query.signal

    @overload
    async def fetch(self, params: Query[R], *, timeout: float | None = None) -> R: ...
    @overload
    async def fetch(self, params: BaseModel, *, timeout: float | None = None) -> Any: ...
    async def fetch(self, params: BaseModel, *, timeout: float | None = None) -> Any:
        """Ask the query of type ``type(params)`` once and return the typed answer (not
        cached, not refetched: :meth:`query` is the live, cached form).

        Raises:
            NotRegistered: the query type is not in the registry (``register_query``).
            CommandRejected: the server refused it (``Forbidden``, ``InvalidValue``, ...).
            ConnectionLost: the link dropped before the answer.
            CommandTimeout: no answer in time.
        """
        name, response = self.registry.query_of(type(params))
        payload = to_wire(params)
        body = await self._command(lambda: self._session.query(name, payload), timeout)
        return from_wire(response, body.get("value"))

    def _fetch(self, query: _Query) -> None:
        if query.fetching:
            query.again = True
            return
        if self._cid is None:
            return  # fetched again on reconnect
        query.fetching = True
        last = query.signal.get()
        query.signal.set(QueryState(QueryStatus.LOADING, last.value))

        async def run() -> None:
            try:
                body = await self._command(
                    lambda: self._session.query(query.name, query.wire_params), None
                )
                value = from_wire(query.response, body.get("value"))
                query.signal.set(QueryState(QueryStatus.READY, value))
            except Exception as exc:
                query.signal.set(QueryState(QueryStatus.ERROR, last.value, exc))
            finally:
                query.fetching = False
                if query.again:
                    query.again = False
                    self._fetch(query)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _invalidated(self, invalidation: Invalidation) -> None:
        keys = invalidation.keys
        for query in self._queries.values():
            if query.name == invalidation.name and (keys is None or query.wire_params in keys):
                self._fetch(query)
