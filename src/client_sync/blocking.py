"""Using a SyncProvider from plain scripts, notebooks and UI toolkits that own their thread."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, TypeVar, overload

import reactivex
from pydantic import BaseModel

from pl3xus_rx.protocol import Query, Request

from ._history import HistoryPoint
from .provider import Change, ConnectionStatus, RequestHandle, SyncProvider
from .registry import ClientTypeRegistry
from .signal import Signal
from .states import Notification, QueryState

__all__ = ["BlockingSyncProvider", "connect"]

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)
V = TypeVar("V")


class BlockingSyncProvider:
    """A :class:`SyncProvider` running on its own event-loop thread.

    Every hook is available from the calling thread: ``get()`` reads at once, and
    ``subscribe`` works from any thread. Subscriber callbacks run on the provider's loop
    thread; a UI toolkit should hand them over to its own thread (e.g. Qt signals,
    ``tkinter.after``). Create it with :func:`connect`.
    """

    def __init__(
        self, provider: SyncProvider, loop: asyncio.AbstractEventLoop, thread: threading.Thread
    ) -> None:
        self._provider = provider
        self._loop = loop
        self._thread = thread

    @property
    def provider(self) -> SyncProvider:
        """The provider (its async methods must run on its loop)."""
        return self._provider

    @property
    def connection(self) -> Signal[ConnectionStatus]:
        """See :attr:`SyncProvider.connection`."""
        return self._provider.connection

    @property
    def stale(self) -> Signal[bool]:
        """See :attr:`SyncProvider.stale`."""
        return self._provider.stale

    @property
    def errors(self) -> reactivex.Observable[Exception]:
        """See :attr:`SyncProvider.errors`."""
        return self._provider.errors

    @property
    def notifications(self) -> reactivex.Observable[Notification]:
        """See :attr:`SyncProvider.notifications` (delivered on the provider's thread)."""
        return self._provider.notifications

    @overload
    def request_handle(self, model: type[Request[R]]) -> RequestHandle[R]: ...
    @overload
    def request_handle(self, model: type[BaseModel]) -> RequestHandle[Any]: ...
    def request_handle(self, model: type[BaseModel]) -> RequestHandle[Any]:
        """See :meth:`SyncProvider.request_handle`; call it with
        ``sync.call(lambda: handle.call(request))``, watch ``handle.state``."""
        return self._provider.request_handle(model)

    @overload
    def query(
        self, model: type[Query[R]], params: Query[R], timeout: float = 10.0
    ) -> Signal[QueryState[R]]: ...
    @overload
    def query(
        self, model: type[BaseModel], params: BaseModel, timeout: float = 10.0
    ) -> Signal[QueryState[Any]]: ...
    def query(
        self, model: type[BaseModel], params: BaseModel, timeout: float = 10.0
    ) -> Signal[QueryState[Any]]:
        """See :meth:`SyncProvider.query` (created on the provider's thread)."""
        signal: Signal[QueryState[Any]] = self.call(
            lambda: self._provider.query(model, params), timeout
        )
        return signal

    @overload
    def fetch(self, params: Query[R], timeout: float = 10.0) -> R: ...
    @overload
    def fetch(self, params: BaseModel, timeout: float = 10.0) -> Any: ...
    def fetch(self, params: BaseModel, timeout: float = 10.0) -> Any:
        """See :meth:`SyncProvider.fetch`: the query's answer, once (or its error)."""
        return self.call(lambda: self._provider.fetch(params), timeout)

    def refetch(
        self, model: type[BaseModel], params: BaseModel | None = None, timeout: float = 10.0
    ) -> int:
        """See :meth:`SyncProvider.refetch` (run on the provider's thread)."""
        return int(self.call(lambda: self._provider.refetch(model, params), timeout))

    def components(self, model: type[T]) -> Signal[Mapping[int, T]]:
        """See :meth:`SyncProvider.components`."""
        return self._provider.components(model)

    def components_where(
        self, model: type[T], predicate: Callable[[T], bool]
    ) -> Signal[Mapping[int, T]]:
        """See :meth:`SyncProvider.components_where`."""
        return self._provider.components_where(model, predicate)

    def entity_component(self, model: type[T], entity: int) -> Signal[T | None]:
        """See :meth:`SyncProvider.entity_component`."""
        return self._provider.entity_component(model, entity)

    def component_changes(self, model: type[T]) -> reactivex.Observable[Change[T]]:
        """See :meth:`SyncProvider.component_changes`."""
        return self._provider.component_changes(model)

    def history(
        self,
        model: type[T],
        entity: int,
        field: str | None = None,
        *,
        seconds: float = 600.0,
        max_points: int = 20_000,
    ) -> Signal[tuple[HistoryPoint, ...]]:
        """See :meth:`SyncProvider.history` (it fills on the provider's thread)."""
        return self._provider.history(model, entity, field, seconds=seconds, max_points=max_points)

    def fetch_history(
        self,
        model: type[T],
        entity: int,
        field: str | None = None,
        *,
        seconds: float = 600.0,
        timeout: float = 10.0,
    ) -> tuple[HistoryPoint, ...]:
        """See :meth:`SyncProvider.fetch_history`: every part, then the points."""
        points: tuple[HistoryPoint, ...] = self.call(
            lambda: self._provider.fetch_history(
                model, entity, field, seconds=seconds, timeout=timeout
            ),
            timeout,
        )
        return points

    def wait_synced(self, timeout: float = 10.0) -> None:
        """Block until every live subscription's snapshot is complete; see
        :meth:`SyncProvider.wait_synced`.

        Raises:
            TimeoutError: not synced within ``timeout`` seconds.
        """
        future = asyncio.run_coroutine_threadsafe(self._provider.wait_synced(timeout), self._loop)
        future.result()  # the provider's own timeout bounds it

    @overload
    def call(self, fn: Callable[[], Coroutine[Any, Any, V]], timeout: float = 10.0) -> V: ...
    @overload
    def call(self, fn: Callable[[], V], timeout: float = 10.0) -> V: ...
    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn()`` on the provider's loop and return its result (awaited, if it is a
        coroutine: ``sync.call(lambda: handle.call(Load(program=3)))``)."""

        async def run() -> Any:
            result = fn()
            if inspect.iscoroutine(result):  # (not any awaitable: a Signal is one)
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Close the provider and stop its thread, in order: the provider closes, the
        loop's remaining tasks are cancelled and awaited, its async generators and default
        executor are shut down, then the loop stops and the thread is joined. Nothing is left
        for interpreter shutdown to race. Safe to call twice."""
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(_shutdown(self._provider), self._loop).result(timeout)
        finally:
            _stop(self._loop, self._thread, timeout)

    def __enter__(self) -> BlockingSyncProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    url: str, registry: ClientTypeRegistry, *, timeout: float = 30.0, **options: Any
) -> BlockingSyncProvider:
    """Connect from synchronous code: starts a loop thread and a :class:`SyncProvider` on it.

    Returns once connected. Use it as a context manager or call ``close()``.

    Args:
        url: ``ws://host:port/`` of the server.
        registry: The types this client uses.
        timeout: Seconds to wait for the first connection.
        **options: Passed to :class:`SyncProvider` (``network``, ``reconnect``,
            ``encoding``, ``transport``, ``command_timeout``, ...).

    Raises:
        ConnectFailed: the first connection failed.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"client_sync {url}", daemon=True)
    thread.start()

    async def start() -> SyncProvider:
        provider = SyncProvider(url, registry, **options)
        await provider.__aenter__()
        return provider

    try:
        provider = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout)
    except BaseException:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_shutdown(None), loop).result(timeout)
        _stop(loop, thread, timeout)
        raise
    return BlockingSyncProvider(provider, loop, thread)


async def _shutdown(provider: SyncProvider | None) -> None:
    """On the loop thread: close the provider, then leave the loop with nothing running."""
    if provider is not None:
        await provider.close()
    loop = asyncio.get_running_loop()
    others = [t for t in asyncio.all_tasks(loop) if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread, timeout: float) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout)
    if not thread.is_alive():
        loop.close()
